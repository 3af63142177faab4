-- ApiKeyStore::list_api_keys: id, fields pairs, oldest first (ties by id).
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'L', 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', P .. 'a' .. id)
end
return out
