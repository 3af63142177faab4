-- ClientStore::revoke_client. ARGV: id, now.
local ck = P .. 'o' .. ARGV[A]
if redis.call('EXISTS', ck) == 0 or redis.call('HEXISTS', ck, 'x') == 1 then return 0 end
redis.call('HSET', ck, 'x', ARGV[A + 1])
return 1
