-- SessionStore::count_active over buckets [first, first + n). ARGV: now,
-- first bucket, bucket count.
local now, first, n = tonumber(ARGV[A]), tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
local total = 0
local b = first
while b < first + n and b < NB do
  total = total + redis.call('ZCOUNT', P .. 'u' .. b, '(' .. ARGV[A], '+inf')
  b = b + 1
end
return total
