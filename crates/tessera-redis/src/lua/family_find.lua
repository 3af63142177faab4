-- RefreshStore::find_refresh (and, with ARGV flag 1, the family's session
-- from the same snapshot). ARGV: token hash, with session flag.
-- Returns {generation, family id, family fields..., session record|false}.
local v = redis.call('HGET', P .. 'r', ARGV[A])
if not v then return false end
local sp = string.find(v, ' ', 1, true)
if not sp then return redis.error_reply('CORRUPT tessera: refresh token index') end
local gen, fid = string.sub(v, 1, sp - 1), string.sub(v, sp + 1)
local f = redis.call('HGETALL', P .. 'f' .. fid)
if #f == 0 then return false end
local session = false
if ARGV[A + 1] == '1' then
  local hc = redis.call('HGET', P .. 'f' .. fid, 'h')
  if hc then session = redis.call('GET', skey(hc)) end
end
return { gen, fid, f, session }
