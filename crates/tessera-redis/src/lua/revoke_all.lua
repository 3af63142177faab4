-- SessionStore::revoke_all_active over buckets [first, first + n). ARGV:
-- reason code, now, at most how many, first bucket, bucket count. Returns
-- {revoked, the bucket to continue from}.
local reason, now, left = tonumber(ARGV[A]), tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
local first, n = tonumber(ARGV[A + 3]), tonumber(ARGV[A + 4])
local done = 0
local b = first
while b < first + n and b < NB do
  local bucket = P .. 'u' .. b
  local a = redis.call('ZRANGEBYSCORE', bucket, '(' .. ARGV[A + 1], '+inf', 'LIMIT', 0, left - done)
  for _, m in ipairs(a) do
    local _, hc = unmember(m)
    local rec = redis.call('GET', skey(hc))
    if rec then
      local r = dec(rec)
      if not r.reason then
        revoke(hc, r, reason, now)
        done = done + 1
      end
    else
      -- The record is gone: the entry is dead, whatever its score says.
      redis.call('ZREM', bucket, m)
    end
  end
  if done >= left then return { done, b } end
  b = b + 1
end
return { done, b }
