-- RefreshStore::create_with_refresh_family: SessionStore::create and a
-- new refresh family in one step. ARGV: the family's ten arguments (see
-- family_write), then create's. The family is checked before anything is
-- written and written only if the session was.
local F = A
A = A + 10
if family_dup(F) then return { 'dup' } end
local function create_session()
