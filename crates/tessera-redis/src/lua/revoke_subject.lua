-- SessionStore::revoke_subject. ARGV: subject, except hc ('' = none),
-- reason code, now. Returns the revoked hcs, in handle order. Reads and
-- decodes every record before the first write.
local subject, except, reason, now = ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2]), tonumber(ARGV[A + 3])
local targets = {}
for _, e in ipairs(entries_of(subject, '(' .. ARGV[A + 3], '+inf')) do
  if e[1] ~= except then
    local rec = redis.call('GET', skey(e[1]))
    if rec then
      local r = dec(rec)
      if not r.reason and expiry(r) > now then targets[#targets + 1] = { e[1], r } end
    end
  end
end
table.sort(targets, function(x, y) return less(x[1], y[1]) end)
local out = {}
for _, t in ipairs(targets) do
  revoke(t[1], t[2], reason, now)
  out[#out + 1] = t[1]
end
return out
