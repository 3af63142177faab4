-- EventStore::events_cursor_since for `revoked`, from the time index.
-- ARGV: since. One less than the smallest id at or after `since`, else
-- the newest id (0 for an empty log).
local min = nil
local off = 0
while true do
  local ids = redis.call('ZRANGEBYSCORE', P .. 'v', ARGV[A], '+inf', 'LIMIT', off, 1000)
  for _, id in ipairs(ids) do
    local n = tonumber(id)
    if not min or n < min then min = n end
  end
  if #ids < 1000 then break end
  off = off + 1000
end
if min then return min - 1 end
local last = redis.call('XREVRANGE', P .. 'e', '+', '-', 'COUNT', 1)[1]
if not last then return 0 end
return tonumber(string.sub(last[1], 3))
