-- RefreshStore::update_with_refresh_family: SessionStore::update and a new
-- refresh family in one step. ARGV: the family's ten arguments (see
-- family_write), then update's. The family is checked before anything is
-- written and written only if the session was swapped.
local F = A
A = A + 10
if family_dup(F) then return -1 end
local function update_session()
