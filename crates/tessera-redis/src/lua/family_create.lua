-- RefreshStore::create_refresh_family. ARGV: family id, session hc, blob,
-- generation, rotated at, sealed ('' with flag 0 = none), sealed flag,
-- first token hash, revoked at, revoke reason ('' = not revoked), then
-- the events.
local fid, hc, blob, gen, rot = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3], ARGV[A + 4]
local sealed, has_sealed, first = ARGV[A + 5], ARGV[A + 6], ARGV[A + 7]
local fk = P .. 'f' .. fid
if redis.call('EXISTS', fk) == 1 or redis.call('HEXISTS', P .. 'r', first) == 1 then
  return { 'dup' }
end
-- A family hangs off its session (the sweep deletes it from there).
if redis.call('EXISTS', skey(hc)) == 0 then return { 'nosession' } end
redis.call('HSET', fk, 'b', blob, 'h', hc, 'g', gen, 't', rot)
if ARGV[A + 8] ~= '' then redis.call('HSET', fk, 'r', ARGV[A + 8], 'w', ARGV[A + 9]) end
if has_sealed == '1' then
  redis.call('HSET', fk, 's', sealed)
  redis.call('ZADD', P .. 'c', rot, fid)
end
redis.call('HSET', P .. 'r', first, gen .. ' ' .. fid)
redis.call('RPUSH', P .. 'l' .. fid, first)
redis.call('RPUSH', P .. 'F' .. hc, fid)
evs(A + 10)
return { 'ok' }
