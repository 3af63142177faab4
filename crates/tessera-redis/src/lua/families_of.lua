-- RefreshStore::refresh_families_of. ARGV: session hc. Returns id, fields
-- pairs.
local out = {}
for _, fid in ipairs(redis.call('LRANGE', P .. 'F' .. ARGV[A], 0, -1)) do
  local f = redis.call('HGETALL', P .. 'f' .. fid)
  if #f > 0 then
    out[#out + 1] = fid
    out[#out + 1] = f
  end
end
return out
