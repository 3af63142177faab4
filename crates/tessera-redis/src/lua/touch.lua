-- SessionStore::touch, and the slide of RefreshStore::rotate_refresh.
-- ARGV: hc, token hash, last seen, idle expiry.
local function touch(hc, hash, ls, idle)
  local k = skey(hc)
  local rec = redis.call('GET', k)
  if not rec then return 0 end
  local r = dec(rec)
  if r.hash ~= hash or r.reason then return 0 end
  local old_e = expiry(r)
  -- Every node drops its copy, so none keeps a last-seen time that says
  -- the next slide is due (which would make it touch on every request).
  inv(r.hash)
  if ls > r.last_seen then r.last_seen = ls end
  if idle > r.idle then r.idle = idle end
  put(k, r, old_e, ls)
  if expiry(r) ~= old_e then
    redis.call('ZADD', sbucket(r.subject), score(r), member(r.subject, hc))
  end
  return 1
end
