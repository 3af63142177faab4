-- RefreshStore::revoke_refresh_family. ARGV: family id, now, reason code,
-- then the events.
local fid = ARGV[A]
local fk = P .. 'f' .. fid
if redis.call('EXISTS', fk) == 0 or redis.call('HEXISTS', fk, 'r') == 1 then return 0 end
redis.call('HSET', fk, 'r', ARGV[A + 1], 'w', ARGV[A + 2])
redis.call('HDEL', fk, 's')
redis.call('ZREM', P .. 'c', fid)
evs(A + 3)
return 1
