-- A new refresh family, for family_create and create_with_family. Its ten
-- arguments from ARGV[at]: family id, session hc, blob, generation,
-- rotated at, sealed ('' with flag 0 = none), sealed flag, first token
-- hash, revoked at, revoke reason ('' = not revoked).
local function family_dup(at)
  return redis.call('EXISTS', P .. 'f' .. ARGV[at]) == 1 or redis.call('HEXISTS', P .. 'r', ARGV[at + 7]) == 1
end

local function family_write(at)
  local fid, hc, blob, gen, rot = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local sealed, has_sealed, first = ARGV[at + 5], ARGV[at + 6], ARGV[at + 7]
  local fk = P .. 'f' .. fid
  redis.call('HSET', fk, 'b', blob, 'h', hc, 'g', gen, 't', rot)
  if ARGV[at + 8] ~= '' then redis.call('HSET', fk, 'r', ARGV[at + 8], 'w', ARGV[at + 9]) end
  if has_sealed == '1' then
    redis.call('HSET', fk, 's', sealed)
    redis.call('ZADD', P .. 'c', rot, fid)
  end
  redis.call('HSET', P .. 'r', first, gen .. ' ' .. fid)
  redis.call('RPUSH', P .. 'l' .. fid, first)
  redis.call('RPUSH', P .. 'F' .. hc, fid)
end
