-- ApiKeyStore::api_key_by_hash. ARGV: hash. Returns {id, fields} or nil.
local id = redis.call('HGET', P .. 'A', ARGV[A])
if not id then return false end
local f = redis.call('HGETALL', P .. 'a' .. id)
if #f == 0 then return false end
return { id, f }
