-- EventStore::delete_events_before. ARGV: cutoff, batch. Deletes a prefix.
local cutoff, batch = tonumber(ARGV[A]), tonumber(ARGV[A + 1])
local n, last = 0, nil
for _, e in ipairs(redis.call('XRANGE', P .. 'e', '-', '+', 'COUNT', batch)) do
  local f = e[2]
  local at, code
  for i = 1, #f, 2 do
    if f[i] == 't' then at = tonumber(f[i + 1]) elseif f[i] == 'k' then code = tonumber(f[i + 1]) end
  end
  if not at or not code then return redis.error_reply('CORRUPT tessera: event ' .. e[1]) end
  if at >= cutoff then break end
  last = tonumber(string.sub(e[1], 3))
  if math.floor(code / 8) == K_REVOKED then redis.call('ZREM', P .. 'v', string.sub(e[1], 3)) end
  n = n + 1
end
if last then redis.call('XTRIM', P .. 'e', 'MINID', '0-' .. string.format('%d', last + 1)) end
return n
