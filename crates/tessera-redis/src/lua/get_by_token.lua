-- SessionStore::get_by_token. ARGV: token hash. Returns {hc, record}; the
-- caller checks the full hash (the index keys its first 16 bytes).
local h = ARGV[A]
local hc = redis.call('HGET', tbucket(h), tfield(h))
if not hc then return false end
local rec = redis.call('GET', skey(hc))
if not rec then return false end
return { hc, rec }
