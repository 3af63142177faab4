-- SigningKeyStore::signing_keys: kid, fields pairs, oldest activation first
-- (ties by kid).
local out = {}
for _, kid in ipairs(redis.call('ZRANGE', P .. 'K', 0, -1)) do
  out[#out + 1] = kid
  out[#out + 1] = redis.call('HGETALL', P .. 'k' .. kid)
end
return out
