-- LeaseStore (see src/layout.rs, key `d`‹name›). Not on the prelude: a
-- lease is one key, given as KEYS[1]. ARGV: op ('acquire', 'renew',
-- 'release'), holder, now (ms, the caller's clock), ttl (ms).
--
-- The value is "‹expires at› ‹holder›": the lease is held while now is
-- before its expiry, by the caller's clock as every expiry in the store
-- is. The key's own TTL (PX ttl) lets Redis drop it too once a holder is
-- gone, whatever the clocks say.
local op, holder = ARGV[1], ARGV[2]
local v = redis.call('GET', KEYS[1])
local cur, exp = nil, 0
if v then
  local sp = string.find(v, ' ', 1, true)
  if not sp then return redis.error_reply('CORRUPT tessera: lease ' .. KEYS[1]) end
  exp = tonumber(string.sub(v, 1, sp - 1))
  cur = string.sub(v, sp + 1)
  if not exp then return redis.error_reply('CORRUPT tessera: lease ' .. KEYS[1]) end
end
if op == 'release' then
  if cur == holder then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return 0
end
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local live = cur ~= nil and now < exp
if op == 'renew' then
  if not (live and cur == holder) then return 0 end
elseif live and cur ~= holder then
  return 0
end
redis.call('SET', KEYS[1], string.format('%d', now + ttl) .. ' ' .. holder, 'PX', ttl)
return 1
