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
