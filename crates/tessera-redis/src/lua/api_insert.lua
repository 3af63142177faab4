-- ApiKeyStore::insert_api_key. ARGV: id, hash, blob, created at, revoked
-- at ('' = not).
local id, hash = ARGV[A], ARGV[A + 1]
local ak = P .. 'a' .. id
if redis.call('EXISTS', ak) == 1 or redis.call('HEXISTS', P .. 'A', hash) == 1 then
  return -1
end
redis.call('HSET', ak, 'b', ARGV[A + 2])
if ARGV[A + 4] ~= '' then redis.call('HSET', ak, 'x', ARGV[A + 4]) end
redis.call('HSET', P .. 'A', hash, id)
redis.call('ZADD', P .. 'L', ARGV[A + 3], id)
return 1
