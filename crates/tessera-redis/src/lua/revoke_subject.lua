-- SessionStore::revoke_subject. ARGV: subject, except hc ('' = none),
-- reason code, now. Returns the revoked hcs, in handle order.
local subject, except, reason, now = ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2]), tonumber(ARGV[A + 3])
local hcs = {}
for _, e in ipairs(entries_of(subject, '(' .. ARGV[A + 3], '+inf')) do
  if e[1] ~= except then hcs[#hcs + 1] = e[1] end
end
table.sort(hcs, less)
local out = {}
for _, hc in ipairs(hcs) do
  local rec = redis.call('GET', skey(hc))
  if rec then
    local r = dec(rec)
    if not r.reason and expiry(r) > now then
      revoke(hc, r, reason, now)
      out[#out + 1] = hc
    end
  end
end
return out
