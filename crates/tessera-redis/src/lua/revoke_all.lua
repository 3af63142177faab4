-- SessionStore::revoke_all_active over buckets [first, first + n). ARGV:
-- reason code, now, at most how many, first bucket, bucket count. Returns
-- {revoked, the bucket to continue from}. Reads and decodes every record
-- before the first write.
local reason, now, left = tonumber(ARGV[A]), tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
local first, n = tonumber(ARGV[A + 3]), tonumber(ARGV[A + 4])
local targets, dead = {}, {}
local b = first
while b < first + n and b < NB and #targets < left do
  local bucket = P .. 'u' .. b
  local a = redis.call('ZRANGEBYSCORE', bucket, '(' .. ARGV[A + 1], '+inf', 'LIMIT', 0, left - #targets)
  for _, m in ipairs(a) do
    local _, hc = unmember(m)
    local rec = redis.call('GET', skey(hc))
    if rec then
      local r = dec(rec)
      if not r.reason then targets[#targets + 1] = { hc, r } end
    else
      -- The record is gone: the entry is dead, whatever its score says.
      dead[#dead + 1] = { bucket, m }
    end
  end
  if #targets < left then b = b + 1 end
end
for _, d in ipairs(dead) do redis.call('ZREM', d[1], d[2]) end
for _, t in ipairs(targets) do revoke(t[1], t[2], reason, now) end
return { #targets, b }
