-- SigningKeyStore::revoke_signing_key. ARGV: kid, now. The sealed private
-- part is erased; the order (by activation) is unchanged.
local kk = P .. 'k' .. ARGV[A]
if redis.call('EXISTS', kk) == 0 or redis.call('HEXISTS', kk, 'x') == 1 then return 0 end
redis.call('HSET', kk, 'x', ARGV[A + 1], 'p', '')
return 1
