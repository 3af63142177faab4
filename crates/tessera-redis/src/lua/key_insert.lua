-- SigningKeyStore::insert_signing_key. ARGV: kid, blob, sealed private
-- part, activates at, if-newest flag, if-newest kid, revoked at ('' = not).
local kid = ARGV[A]
local kk = P .. 'k' .. kid
if redis.call('EXISTS', kk) == 1 then return -1 end
local newest = redis.call('ZREVRANGE', P .. 'K', 0, 0)[1]
if ARGV[A + 4] == '1' then
  if newest ~= ARGV[A + 5] then return 0 end
elseif newest then
  return 0
end
redis.call('HSET', kk, 'b', ARGV[A + 1], 'p', ARGV[A + 2])
if ARGV[A + 6] ~= '' then redis.call('HSET', kk, 'x', ARGV[A + 6]) end
redis.call('ZADD', P .. 'K', ARGV[A + 3], kid)
return 1
