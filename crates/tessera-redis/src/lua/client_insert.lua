-- ClientStore::insert_client. ARGV: id, created at, revoked at ('' = not),
-- registration.
local id = ARGV[A]
local ck = P .. 'o' .. id
if redis.call('EXISTS', ck) == 1 then return -1 end
redis.call('HSET', ck, 'c', ARGV[A + 1], 'g', ARGV[A + 3])
if ARGV[A + 2] ~= '' then redis.call('HSET', ck, 'x', ARGV[A + 2]) end
redis.call('ZADD', P .. 'O', ARGV[A + 1], id)
return 1
