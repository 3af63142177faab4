-- wrk script for scripts/bench-http: every request is
--   POST /v1/sessions/verify
--   Authorization: Bearer $TESSERA_KEY
--   Content-Type: application/json
--   {"session_token":"$TESSERA_TOKEN"}
-- The same request goes to Tessera and to the bare axum baseline.
local key = os.getenv("TESSERA_KEY") or ""
local token = os.getenv("TESSERA_TOKEN") or ""

wrk.method = "POST"
wrk.path = "/v1/sessions/verify"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"session_token":"' .. token .. '"}'

-- wrk prints "Non-2xx or 3xx responses: N" when any request failed;
-- scripts/bench-http refuses a run with such responses.
