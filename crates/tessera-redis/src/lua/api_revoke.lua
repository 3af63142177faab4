-- ApiKeyStore::revoke_api_key. ARGV: id, now.
local ak = P .. 'a' .. ARGV[A]
if redis.call('EXISTS', ak) == 0 or redis.call('HEXISTS', ak, 'x') == 1 then return 0 end
redis.call('HSET', ak, 'x', ARGV[A + 1])
return 1
