-- RefreshStore::create_refresh_family. ARGV: the family's ten arguments
-- (see family_write), then the events.
if family_dup(A) then return { 'dup' } end
-- A family hangs off its session (the sweep deletes it from there).
if redis.call('EXISTS', skey(ARGV[A + 1])) == 0 then return { 'nosession' } end
family_write(A)
evs(A + 10)
return { 'ok' }
