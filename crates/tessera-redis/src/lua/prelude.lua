-- Shared by every script (prepended to each). See src/layout.rs for the
-- key layout and src/codec.rs for the record format this mirrors.
--
-- ARGV[1] = key prefix (with its hash tag), ARGV[2] = bucket count,
-- ARGV[3] = grace (ms a record outlives its expiry); a script's own
-- arguments start at ARGV[4]. Every key carries the prefix's hash tag, so
-- the keys a script derives here are in the slot of the key it was sent
-- with (Redis Cluster routes by KEYS[1]).
local P = ARGV[1]
local NB = tonumber(ARGV[2])
local GRACE = tonumber(ARGV[3])
local A = 4

local K_REVOKED = 4
local K_EXPIRED = 5

local function corrupt(what)
  return redis.error_reply('CORRUPT tessera: ' .. what)
end

-- Postcard's varints: LEB128, zigzag for signed values. Lua numbers are
-- doubles, exact to 2^53; the Rust side refuses values beyond 2^50.
local function uvar(s, p)
  local v, m = 0, 1
  while true do
    local b = string.byte(s, p)
    if not b then error(corrupt('record (truncated)')) end
    p = p + 1
    if b < 128 then return v + b * m, p end
    v = v + (b - 128) * m
    m = m * 128
    if m > 2 ^ 56 then error(corrupt('record (varint)')) end
  end
end

local function zvar(s, p)
  local u
  u, p = uvar(s, p)
  if u % 2 == 0 then return u / 2, p end
  return -(u + 1) / 2, p
end

local function euvar(v)
  local t = {}
  while v >= 128 do
    local r = v % 128
    t[#t + 1] = string.char(r + 128)
    v = (v - r) / 128
  end
  t[#t + 1] = string.char(v)
  return table.concat(t)
end

local function ezvar(v)
  if v >= 0 then return euvar(v * 2) end
  return euvar(-v * 2 - 1)
end

-- Byte order, whatever the server's collation locale.
local function less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- A session record: the head this file reads and writes, then a tail only
-- Rust reads (kept byte for byte).
local function dec(rec)
  if string.byte(rec, 1) ~= 1 then error(corrupt('record (format)')) end
  local r, d = {}, 0
  local p = 2
  r.version, p = uvar(rec, p)
  r.created, p = zvar(rec, p)
  d, p = zvar(rec, p)
  r.last_seen = r.created + d
  r.idle_timeout, p = zvar(rec, p)
  d, p = zvar(rec, p)
  r.idle = r.last_seen + r.idle_timeout + d
  d, p = zvar(rec, p)
  r.abs = r.created + d
  local flag = string.byte(rec, p)
  p = p + 1
  if flag == 1 then
    r.reason = string.byte(rec, p)
    p = p + 1
    d, p = zvar(rec, p)
    r.revoked_at = r.created + d
  elseif flag ~= 0 then
    error(corrupt('record (revocation)'))
  end
  r.hash = string.sub(rec, p, p + 31)
  p = p + 32
  local n
  n, p = uvar(rec, p)
  r.subject = string.sub(rec, p, p + n - 1)
  p = p + n
  if #r.hash ~= 32 or #r.subject ~= n then error(corrupt('record (truncated)')) end
  r.tail = string.sub(rec, p)
  return r
end

local function enc(r)
  local t = {
    string.char(1), euvar(r.version), ezvar(r.created), ezvar(r.last_seen - r.created),
    ezvar(r.idle_timeout), ezvar(r.idle - r.last_seen - r.idle_timeout), ezvar(r.abs - r.created),
  }
  if r.reason then
    t[#t + 1] = string.char(1, r.reason) .. ezvar(r.revoked_at - r.created)
  else
    t[#t + 1] = string.char(0)
  end
  t[#t + 1] = r.hash
  t[#t + 1] = euvar(#r.subject)
  t[#t + 1] = r.subject
  t[#t + 1] = r.tail
  return table.concat(t)
end

local function expiry(r)
  local e = math.min(r.idle, r.abs)
  if e < 1 then e = 1 end
  return e
end

-- The subject index score: the expiry, negated once revoked, so active
-- sessions are exactly the scores above `now`.
local function score(r)
  if r.reason then return -expiry(r) end
  return expiry(r)
end

local function skey(hc) return P .. 's' .. hc end
local function sbucket(subject)
  return P .. 'u' .. (tonumber(string.sub(redis.sha1hex(subject), 1, 6), 16) % NB)
end
local function tbucket(hash)
  return P .. 't' .. ((string.byte(hash, 17) * 256 + string.byte(hash, 18)) % NB)
end
local function tfield(hash) return string.sub(hash, 1, 16) end

-- Invalidations (src/cache.rs): the token index field (first 16 bytes of
-- the token hash) of every session this script changed. A script that
-- writes sessions is wrapped (src/scripts.rs) so that, after its body
-- ran, it publishes them on the channel `P .. 'i'` in the same atomic
-- step and returns them to its caller too.
local INV = {}
local function inv(hash) INV[#INV + 1] = tfield(hash) end
local function member(subject, hc) return euvar(#subject) .. subject .. hc end
local function unmember(m)
  local n, p = uvar(m, 1)
  return string.sub(m, p, p + n - 1), string.sub(m, p + n)
end

-- How long a record with expiry `e` is kept from `now` on: until its
-- expiry, plus the grace in which a sweep normally deletes it first.
local function ttl_for(e, now)
  local t = e - now
  if t < 0 then t = 0 end
  return math.floor(t + GRACE)
end

-- Writes a changed record, moving its TTL by as much as its expiry moved.
local function put(k, r, old_e, now)
  local pt = redis.call('PTTL', k)
  local ttl
  if pt > 0 then ttl = math.floor(pt + expiry(r) - old_e) else ttl = ttl_for(expiry(r), now) end
  if ttl < GRACE then ttl = GRACE end
  redis.call('SET', k, enc(r), 'PX', ttl)
end

-- Appends one event; `code` = kind * 8 + reason. Revocations are also
-- indexed by time for the feed's cursor.
local function ev(at, code, subject, hc)
  local id = redis.call('XADD', P .. 'e', '0-*', 't', at, 'k', code, 's', subject, 'h', hc)
  if math.floor(tonumber(code) / 8) == K_REVOKED then
    redis.call('ZADD', P .. 'v', at, string.sub(id, 3))
  end
end

-- The events passed from Rust: a count at ARGV[i], then 4 values each.
local function evs(i)
  local n = tonumber(ARGV[i])
  for j = 0, n - 1 do
    local b = i + 1 + 4 * j
    ev(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3])
  end
  return i + 1 + 4 * n
end

-- Marks a session revoked (bumping its version) and logs it.
local function revoke(hc, r, reason, now)
  local old_e = expiry(r)
  local bucket = sbucket(r.subject)
  r.version = r.version + 1
  r.reason = reason
  r.revoked_at = now
  inv(r.hash)
  put(skey(hc), r, old_e, now)
  redis.call('ZADD', bucket, score(r), member(r.subject, hc))
  ev(now, K_REVOKED * 8 + reason, r.subject, hc)
end

-- The refresh families of a session, with their token hashes.
local function drop_families(hc)
  local fl = P .. 'F' .. hc
  for _, fid in ipairs(redis.call('LRANGE', fl, 0, -1)) do
    local tl = P .. 'l' .. fid
    for _, h in ipairs(redis.call('LRANGE', tl, 0, -1)) do
      redis.call('HDEL', P .. 'r', h)
    end
    redis.call('DEL', tl, P .. 'f' .. fid)
    redis.call('ZREM', P .. 'c', fid)
  end
  redis.call('DEL', fl)
end

-- Deletes the session an index entry names, with its token hash and
-- families; logs `expired` unless it was revoked. The entry alone is
-- enough: a record Redis already dropped by its TTL still gets its event,
-- and so does one that no longer decodes (its token-index entry, if any,
-- is then left to `sample_tokens`): one bad value must not stop every
-- later sweep.
local function forget(bucket, m, sc, now)
  local subject, hc = unmember(m)
  local k = skey(hc)
  local rec = redis.call('GET', k)
  local revoked = sc < 0
  if rec then
    local ok, r = pcall(dec, rec)
    if ok then
      revoked = r.reason ~= nil
      inv(r.hash)
      local tb, tf = tbucket(r.hash), tfield(r.hash)
      if redis.call('HGET', tb, tf) == hc then redis.call('HDEL', tb, tf) end
    end
    redis.call('DEL', k)
  end
  if not revoked then ev(now, K_EXPIRED * 8, subject, hc) end
  drop_families(hc)
  redis.call('ZREM', bucket, m)
end

-- Index entries of sessions expired at `now` (revoked or not), up to `n`.
local function expired_in(bucket, now, n)
  local out = {}
  local a = redis.call('ZRANGEBYSCORE', bucket, -now, -1, 'WITHSCORES', 'LIMIT', 0, n)
  for i = 1, #a, 2 do out[#out + 1] = { a[i], tonumber(a[i + 1]) } end
  if #out < n then
    local b = redis.call('ZRANGEBYSCORE', bucket, 1, now, 'WITHSCORES', 'LIMIT', 0, n - #out)
    for i = 1, #b, 2 do out[#out + 1] = { b[i], tonumber(b[i + 1]) } end
  end
  return out
end

-- Trim on write: drops (with their events) the expired entries of `bucket`
-- whose record Redis has already deleted by its TTL, a few per write.
local function trim(bucket, now)
  for _, e in ipairs(expired_in(bucket, now, 8)) do
    local _, hc = unmember(e[1])
    if redis.call('EXISTS', skey(hc)) == 0 then forget(bucket, e[1], e[2], now) end
  end
end

-- The token index has no time to trim by: each create checks a few random
-- entries of the bucket it writes and drops those whose record is gone
-- (deleted by its TTL while no sweeper ran). Three per create keep dead
-- entries below half of a bucket even if every session ends that way.
local function sample_tokens(bucket)
  local a = redis.call('HRANDFIELD', bucket, 3, 'WITHVALUES')
  for i = 1, #a, 2 do
    if redis.call('EXISTS', skey(a[i + 1])) == 0 then redis.call('HDEL', bucket, a[i]) end
  end
end

-- The index entries of `subject` whose score is in [lo, hi]: {hc, score}.
local function entries_of(subject, lo, hi)
  local out = {}
  local a = redis.call('ZRANGEBYSCORE', sbucket(subject), lo, hi, 'WITHSCORES')
  for i = 1, #a, 2 do
    local s, hc = unmember(a[i])
    if s == subject then out[#out + 1] = { hc, tonumber(a[i + 1]) } end
  end
  return out
end
