-- ReplayStore::use_once (see src/layout.rs, key `x`‹marker›). Not on the
-- prelude: a marker is one key, given as KEYS[1]. ARGV: expires at (ms),
-- now (ms, the caller's clock).
--
-- The value is the marker's expiry: it is recorded while now is before
-- it, by the caller's clock as every expiry in the store is; the key's own
-- TTL lets Redis drop it once it has expired, so no sweep is needed.
local exp, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('GET', KEYS[1])
if v and now < (tonumber(v) or 0) then return 0 end
local ttl = exp - now
if ttl < 1 then ttl = 1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1
