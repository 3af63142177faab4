-- SessionStore::list_by_subject. ARGV: subject. Returns hc, record pairs.
local out = {}
for _, e in ipairs(entries_of(ARGV[A], '-inf', '+inf')) do
  local rec = redis.call('GET', skey(e[1]))
  if rec then
    out[#out + 1] = e[1]
    out[#out + 1] = rec
  end
end
return out
