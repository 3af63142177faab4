-- ClientStore::client_by_id and list_clients. ARGV: id, or nothing for
-- every client. Answers id, {c, x, g} pairs, oldest first (ties by id).
local ids = {}
if ARGV[A] then ids = { ARGV[A] } else ids = redis.call('ZRANGE', P .. 'O', 0, -1) end
local out = {}
for _, id in ipairs(ids) do
  local ck = P .. 'o' .. id
  if redis.call('EXISTS', ck) == 1 then
    out[#out + 1] = id
    out[#out + 1] = redis.call('HMGET', ck, 'c', 'x', 'g')
  end
end
return out
