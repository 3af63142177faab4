-- RefreshStore::rotate_refresh. ARGV: family id, expected generation, next
-- generation, successor hash, sealed, sealed flag, now, touch flag, touch
-- hc, touch hash, last seen, idle expiry, binding (JSON; '' for none),
-- then the events.
local fid, expected, nextg, succ = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
local sealed, has_sealed, now = ARGV[A + 4], ARGV[A + 5], ARGV[A + 6]
local fk = P .. 'f' .. fid
local g = redis.call('HGET', fk, 'g')
if not g or g ~= expected or redis.call('HEXISTS', fk, 'r') == 1 then return 0 end
if redis.call('HEXISTS', P .. 'r', succ) == 1 then return -1 end
-- The slide first: it is the only part that reads (and may refuse) a
-- record, and nothing may be written before that.
if ARGV[A + 7] == '1' then
  touch(ARGV[A + 8], ARGV[A + 9], tonumber(ARGV[A + 10]), tonumber(ARGV[A + 11]))
end
redis.call('HSET', P .. 'r', succ, nextg .. ' ' .. fid)
redis.call('RPUSH', P .. 'l' .. fid, succ)
redis.call('HSET', fk, 'g', nextg, 't', now)
if has_sealed == '1' then
  redis.call('HSET', fk, 's', sealed)
  redis.call('ZADD', P .. 'c', now, fid)
else
  redis.call('HDEL', fk, 's')
  redis.call('ZREM', P .. 'c', fid)
end
-- A binding only where the family has none: `k` is set once, and only
-- for a family created unbound (the caller checks the record).
if ARGV[A + 12] ~= '' then
  redis.call('HSETNX', fk, 'k', ARGV[A + 12])
end
evs(A + 13)
return 1
