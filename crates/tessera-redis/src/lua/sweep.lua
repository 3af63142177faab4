-- SessionStore::sweep over buckets [first, first + n). ARGV: now, at most
-- how many, first bucket, bucket count. Returns {deleted, the bucket to
-- continue from}.
local now, left = tonumber(ARGV[A]), tonumber(ARGV[A + 1])
local first, n = tonumber(ARGV[A + 2]), tonumber(ARGV[A + 3])
local done = 0
local b = first
while b < first + n and b < NB do
  local bucket = P .. 'u' .. b
  for _, e in ipairs(expired_in(bucket, now, left - done)) do
    forget(bucket, e[1], e[2], now)
    done = done + 1
  end
  if done >= left then return { done, b } end
  b = b + 1
end
return { done, b }
