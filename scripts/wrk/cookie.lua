-- wrk script for scripts/bench-browser: every request is
--   GET $BENCH_PATH            (default /me)
--   Cookie: $BENCH_COOKIE      (name=value, as the server printed it)
-- The same request shape goes to the browser layer, tower-sessions, the
-- forward-auth endpoint and the bare axum baseline.
local path = os.getenv("BENCH_PATH") or "/me"
local cookie = os.getenv("BENCH_COOKIE") or ""

wrk.method = "GET"
wrk.path = path
wrk.headers["Cookie"] = cookie

-- wrk prints "Non-2xx or 3xx responses: N" when any request failed;
-- scripts/bench-browser refuses a run with such responses.

-- As a reverse proxy sends it to forward auth: the proxied request's method
-- (scripts/bench-http sets it for GET /auth/verify).
local fwd_method = os.getenv("BENCH_FORWARDED_METHOD")
if fwd_method and fwd_method ~= "" then
    wrk.headers["X-Forwarded-Method"] = fwd_method
end
