-- SessionStore::create. ARGV: hc, record, now, replace hc ('' = none),
-- replace version, max per subject ('' = none), then the events.
-- Every record it needs is read and decoded before the first write: a
-- script that fails half-way is not rolled back.
local hc, rec, now = ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2])
local rhc, rver, max = ARGV[A + 3], ARGV[A + 4], ARGV[A + 5]
local r = dec(rec)
local k = skey(hc)
local tb, tf = tbucket(r.hash), tfield(r.hash)
-- A duplicate wins over every other effect.
if redis.call('EXISTS', k) == 1 or redis.call('HEXISTS', tb, tf) == 1 then
  return { 'dup' }
end
local replaced = nil
if rhc ~= '' then
  local old = redis.call('GET', skey(rhc))
  if not old then return { 'conflict' } end
  replaced = dec(old)
  if replaced.reason or replaced.version ~= tonumber(rver) then return { 'conflict' } end
end
-- The subject's other active sessions, oldest first (by created_at, then
-- handle: hc sorts as the handle does), for the limit.
local others = {}
if max ~= '' then
  for _, e in ipairs(entries_of(r.subject, '(' .. ARGV[A + 2], '+inf')) do
    if e[1] ~= hc and e[1] ~= rhc then
      local orec = redis.call('GET', skey(e[1]))
      if orec then others[#others + 1] = { e[1], dec(orec) } end
    end
  end
  table.sort(others, function(x, y)
    if x[2].created ~= y[2].created then return x[2].created < y[2].created end
    return less(x[1], y[1])
  end)
end

if replaced then revoke(rhc, replaced, 3, now) end
local bucket = sbucket(r.subject)
trim(bucket, now)
sample_tokens(tb)
redis.call('SET', k, rec, 'PX', ttl_for(expiry(r), now))
redis.call('HSET', tb, tf, hc)
redis.call('ZADD', bucket, score(r), member(r.subject, hc))
evs(A + 6)
local evicted = { 'ok' }
if max ~= '' then
  local keep = tonumber(max)
  if score(r) > now then keep = keep - 1 end
  if keep < 0 then keep = 0 end
  for i = 1, #others - keep do
    revoke(others[i][1], others[i][2], 4, now)
    evicted[#evicted + 1] = others[i][1]
  end
end
return evicted
