-- RefreshStore::clear_sealed_successors. ARGV: rotated before, batch.
local due = redis.call('ZRANGEBYSCORE', P .. 'c', '-inf', '(' .. ARGV[A], 'LIMIT', 0, tonumber(ARGV[A + 1]))
for _, fid in ipairs(due) do
  redis.call('HDEL', P .. 'f' .. fid, 's')
  redis.call('ZREM', P .. 'c', fid)
end
return #due
