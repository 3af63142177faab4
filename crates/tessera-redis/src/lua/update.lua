-- SessionStore::update. ARGV: hc, new record, expected version, events.
local hc, rec, expected = ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2])
local k = skey(hc)
local cur = redis.call('GET', k)
if not cur then return 0 end
local o = dec(cur)
if o.version ~= expected then return 0 end
local n = dec(rec)
local rekey = n.hash ~= o.hash
if rekey and redis.call('HEXISTS', tbucket(n.hash), tfield(n.hash)) == 1 then
  return -1
end
-- A touch that landed since the caller read the record is kept.
inv(o.hash)
if o.last_seen > n.last_seen then n.last_seen = o.last_seen end
if o.idle > n.idle then n.idle = o.idle end
put(k, n, expiry(o), n.last_seen)
if rekey then
  local ob, of = tbucket(o.hash), tfield(o.hash)
  if redis.call('HGET', ob, of) == hc then redis.call('HDEL', ob, of) end
  redis.call('HSET', tbucket(n.hash), tfield(n.hash), hc)
end
if n.subject ~= o.subject then
  redis.call('ZREM', sbucket(o.subject), member(o.subject, hc))
end
redis.call('ZADD', sbucket(n.subject), score(n), member(n.subject, hc))
evs(A + 3)
return 1
