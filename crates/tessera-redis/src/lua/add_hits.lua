-- RateLimitStore::add_hits (see src/layout.rs, key `r`‹counter›). Not on
-- the prelude: a counter is one key, given as KEYS[1]: a hash of window
-- index → hits. ARGV: window, hits, expires at (ms), now (ms, the
-- caller's clock).
--
-- Windows older than the previous one weigh nothing any more and are
-- dropped on the way; the key's TTL (the latest window's expiry) lets
-- Redis drop an idle counter, so no sweep is needed.
local w, hits = tonumber(ARGV[1]), tonumber(ARGV[2])
local exp, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local cur = redis.call('HINCRBY', KEYS[1], ARGV[1], hits)
local prev = tonumber(redis.call('HGET', KEYS[1], tostring(w - 1)) or '0') or 0
if redis.call('HLEN', KEYS[1]) > 2 then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    local fw = tonumber(f)
    if fw == nil or fw < w - 1 then redis.call('HDEL', KEYS[1], f) end
  end
end
local ttl = exp - now
if ttl < 1 then ttl = 1 end
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {cur, prev}
