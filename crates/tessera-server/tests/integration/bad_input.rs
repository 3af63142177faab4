//! SPEC §3 / §5, SC-13: bad input never produces a 5xx, a panic or a
//! partial write. One table, every endpoint, raw HTTP so nothing is
//! normalised on the way.

use serde_json::{Value, json};

use crate::harness::{Opts, Resp, TestServer, check_problem, forged_token, raw_http};

#[derive(Clone)]
enum Auth {
    /// The bootstrap key.
    Key,
    /// No `Authorization` header.
    Missing,
    /// This exact header value (may be non-UTF-8).
    Raw(Vec<u8>),
}

struct Case {
    name: String,
    method: &'static str,
    /// Request target, sent as is.
    target: String,
    auth: Auth,
    content_type: Option<&'static str>,
    extra_headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// Send the body with `Transfer-Encoding: chunked` (no length up front).
    chunked: bool,
    /// Acceptable (status, code) answers; almost always exactly one.
    expect: Vec<(u16, &'static str)>,
    /// A word the problem `detail` must contain (the field it names).
    detail: Option<&'static str>,
}

fn case(
    name: impl Into<String>,
    method: &'static str,
    target: impl Into<String>,
    body: impl Into<Vec<u8>>,
) -> Case {
    Case {
        name: name.into(),
        method,
        target: target.into(),
        auth: Auth::Key,
        content_type: Some("application/json"),
        extra_headers: Vec::new(),
        body: body.into(),
        chunked: false,
        expect: Vec::new(),
        detail: None,
    }
}

impl Case {
    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.expect.push((status, code));
        self
    }
    fn detail(mut self, word: &'static str) -> Self {
        self.detail = Some(word);
        self
    }
    fn ct(mut self, ct: Option<&'static str>) -> Self {
        self.content_type = ct;
        self
    }
    fn auth(mut self, a: Auth) -> Self {
        self.auth = a;
        self
    }
    fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }
    fn header(mut self, k: &str, v: impl Into<Vec<u8>>) -> Self {
        self.extra_headers.push((k.to_owned(), v.into()));
        self
    }
}

fn j(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn cases(live_handle: &str, live_token: &str) -> Vec<Case> {
    let big_token = format!("tss_{}", "A".repeat(10 * 1024));
    let deep = format!("{{\"subject\":\"x\",\"data\":{{\"a\":{}}}}}", "[".repeat(10_000));
    let huge_data = json!({"subject": "x", "data": {"blob": "x".repeat(20 * 1024)}});
    let over_body = json!({"subject": "x", "data": {"blob": "x".repeat(70 * 1024)}});
    let long_subject = "s".repeat(257);
    let s = "/v1/sessions";
    let v = "/v1/sessions/verify";
    let e = "/v1/sessions/elevate";
    let r = "/v1/sessions/revoke";
    let handle_path = format!("/v1/sessions/{live_handle}");
    let vf = "validation_failed";
    let si = "session_invalid";

    vec![
        // ---- POST /v1/sessions/verify: tokens (SC-13) ----
        case("verify: 10 KB token", "POST", v, j(json!({"session_token": big_token}))).expect(401, si),
        case("verify: NUL in token", "POST", v, j(json!({"session_token": format!("tss_{}\u{0}", "A".repeat(42))})))
            .expect(401, si),
        case("verify: only NUL", "POST", v, j(json!({"session_token": "\u{0}"}))).expect(401, si),
        case("verify: SQL token", "POST", v, j(json!({"session_token": "' OR 1=1--"}))).expect(401, si),
        case("verify: empty token", "POST", v, j(json!({"session_token": ""}))).expect(401, si),
        case("verify: API key as token", "POST", v, j(json!({"session_token": forged_token("tsk_", 1)})))
            .expect(401, si),
        case("verify: refresh-token prefix", "POST", v, j(json!({"session_token": forged_token("tsr_", 1)})))
            .expect(401, si),
        case(
            "verify: non-canonical base64 tail",
            "POST",
            v,
            j(json!({"session_token": format!("tss_{}B", "A".repeat(42))})),
        )
        .expect(401, si),
        case("verify: token is a number", "POST", v, j(json!({"session_token": 12345}))).expect(400, vf).detail("session_token"),
        case("verify: token is null", "POST", v, j(json!({"session_token": null}))).expect(400, vf).detail("session_token"),
        case("verify: token missing", "POST", v, j(json!({}))).expect(400, vf).detail("session_token"),
        case("verify: unknown field", "POST", v, j(json!({"session_token": forged_token("tss_", 2), "extra": 1})))
            .expect(400, vf)
            .detail("extra"),
        case("verify: non-UTF-8 body", "POST", v, b"{\"session_token\":\"tss_\xff\xfe\"}".to_vec()).expect(400, vf),
        case("verify: empty body", "POST", v, Vec::new()).expect(400, vf),
        case("verify: null body", "POST", v, b"null".to_vec()).expect(400, vf),
        case("verify: array body", "POST", v, b"[]".to_vec()).expect(400, vf),
        case("verify: truncated JSON", "POST", v, b"{\"session_token\":".to_vec()).expect(400, vf),
        case("verify: trailing garbage", "POST", v, b"{\"session_token\":\"x\"} xx".to_vec()).expect(400, vf),
        case("verify: text/plain", "POST", v, j(json!({"session_token": "x"})))
            .ct(Some("text/plain"))
            .expect(415, "unsupported_media_type"),
        case("verify: form", "POST", v, b"session_token=x".to_vec())
            .ct(Some("application/x-www-form-urlencoded"))
            .expect(415, "unsupported_media_type"),
        case("verify: no content type", "POST", v, j(json!({"session_token": "x"})))
            .ct(None)
            .expect(415, "unsupported_media_type"),
        case("verify: token in query only", "POST", format!("{v}?session_token={}", forged_token("tss_", 4)), j(json!({})))
            .expect(400, vf),
        // ---- POST /v1/sessions: subjects ----
        case("create: NUL in subject", "POST", s, j(json!({"subject": "ali\u{0}ce"}))).expect(400, vf).detail("subject"),
        case("create: newline in subject", "POST", s, j(json!({"subject": "a\nb"}))).expect(400, vf).detail("subject"),
        case("create: empty subject", "POST", s, j(json!({"subject": ""}))).expect(400, vf).detail("subject"),
        case("create: 257-byte subject", "POST", s, j(json!({"subject": long_subject}))).expect(400, vf).detail("subject"),
        case("create: subject is a number", "POST", s, j(json!({"subject": 42}))).expect(400, vf).detail("subject"),
        case("create: subject missing", "POST", s, j(json!({"data": {}}))).expect(400, vf).detail("subject"),
        case("create: unknown top-level field", "POST", s, j(json!({"subject": "x", "admin": true})))
            .expect(400, vf)
            .detail("admin"),
        // ---- auth ----
        case("create: level \"2\"", "POST", s, j(json!({"subject": "x", "auth": {"level": "2"}}))).expect(400, vf).detail("level"),
        case("create: level -1", "POST", s, j(json!({"subject": "x", "auth": {"level": -1}}))).expect(400, vf).detail("level"),
        case("create: level 300", "POST", s, j(json!({"subject": "x", "auth": {"level": 300}}))).expect(400, vf).detail("level"),
        case("create: level 0", "POST", s, j(json!({"subject": "x", "auth": {"level": 0}}))).expect(400, vf).detail("level"),
        case("create: level 10 > max 9", "POST", s, j(json!({"subject": "x", "auth": {"level": 10}}))).expect(400, vf).detail("level"),
        case("create: level 1.5", "POST", s, j(json!({"subject": "x", "auth": {"level": 1.5}}))).expect(400, vf).detail("level"),
        case("create: method with space", "POST", s, j(json!({"subject": "x", "auth": {"methods": ["p w d"]}})))
            .expect(400, vf)
            .detail("methods"),
        case("create: methods not array", "POST", s, j(json!({"subject": "x", "auth": {"methods": "pwd"}})))
            .expect(400, vf)
            .detail("methods"),
        case("create: 17 methods", "POST", s, j(json!({"subject": "x", "auth": {"methods": (0..17).map(|i| format!("m{i}")).collect::<Vec<_>>()}})))
            .expect(400, vf)
            .detail("methods"),
        case("create: unknown auth field", "POST", s, j(json!({"subject": "x", "auth": {"level": 1, "role": "admin"}})))
            .expect(400, vf)
            .detail("role"),
        // ---- device ----
        case("create: invalid ip", "POST", s, j(json!({"subject": "x", "device": {"ip": "999.1.1.1"}}))).expect(400, vf).detail("ip"),
        case("create: ip with port", "POST", s, j(json!({"subject": "x", "device": {"ip": "1.2.3.4:80"}}))).expect(400, vf).detail("ip"),
        case("create: control char in user_agent", "POST", s, j(json!({"subject": "x", "device": {"user_agent": "Mozilla\u{1b}[2J"}})))
            .expect(400, vf)
            .detail("user_agent"),
        case("create: NUL in user_agent", "POST", s, j(json!({"subject": "x", "device": {"user_agent": "a\u{0}b"}})))
            .expect(400, vf)
            .detail("user_agent"),
        // ---- data ----
        case("create: data as array", "POST", s, j(json!({"subject": "x", "data": [1, 2]}))).expect(400, vf).detail("data"),
        case("create: data as string", "POST", s, j(json!({"subject": "x", "data": "x"}))).expect(400, vf).detail("data"),
        case("create: data 20 KiB (> 16 KiB)", "POST", s, j(huge_data.clone()))
            .expect(413, "payload_too_large")
            .expect(400, vf),
        case("create: body > 64 KiB", "POST", s, j(over_body.clone())).expect(413, "payload_too_large"),
        case("create: body > 64 KiB, chunked", "POST", s, j(over_body.clone()))
            .chunked()
            .expect(413, "payload_too_large"),
        case("create: 10,000 nested [", "POST", s, deep.into_bytes()).expect(400, vf),
        case("create: duplicate subject key", "POST", s, br#"{"subject":"x","subject":"canary"}"#.to_vec())
            .expect(400, vf)
            .detail("subject"),
        case("create: application/jsonx", "POST", s, j(json!({"subject": "x"})))
            .ct(Some("application/jsonx"))
            .expect(415, "unsupported_media_type"),
        // ---- ttl ----
        case("create: idle 0", "POST", s, j(json!({"subject": "x", "ttl": {"idle_secs": 0}}))).expect(400, vf).detail("idle_secs"),
        case("create: idle -5", "POST", s, j(json!({"subject": "x", "ttl": {"idle_secs": -5}}))).expect(400, vf).detail("idle_secs"),
        case("create: absolute 0", "POST", s, j(json!({"subject": "x", "ttl": {"absolute_secs": 0}}))).expect(400, vf).detail("absolute_secs"),
        case("create: absolute i64::MAX", "POST", s, j(json!({"subject": "x", "ttl": {"absolute_secs": i64::MAX}})))
            .expect(400, vf)
            .detail("absolute_secs"),
        case("create: idle 1e30", "POST", s, br#"{"subject":"x","ttl":{"idle_secs":1e30}}"#.to_vec())
            .expect(400, vf)
            .detail("idle_secs"),
        case("create: idle u64::MAX", "POST", s, j(json!({"subject": "x", "ttl": {"idle_secs": u64::MAX}})))
            .expect(400, vf)
            .detail("idle_secs"),
        case("create: idle > max (31 days)", "POST", s, j(json!({"subject": "x", "ttl": {"idle_secs": 31 * 86400}})))
            .expect(400, vf)
            .detail("idle_secs"),
        case("create: ttl as string", "POST", s, j(json!({"subject": "x", "ttl": "1h"}))).expect(400, vf).detail("ttl"),
        case("create: unknown ttl field", "POST", s, j(json!({"subject": "x", "ttl": {"renew_secs": 5}})))
            .expect(400, vf)
            .detail("renew_secs"),
        case("create: previous token is a number", "POST", s, j(json!({"subject": "x", "previous_session_token": 7})))
            .expect(400, vf)
            .detail("previous_session_token"),
        // ---- create: bodies and media types ----
        case("create: empty body", "POST", s, Vec::new()).expect(400, vf),
        case("create: null body", "POST", s, b"null".to_vec()).expect(400, vf),
        case("create: non-UTF-8 body", "POST", s, b"{\"subject\":\"\xc3\x28\"}".to_vec()).expect(400, vf),
        case("create: UTF-16 body", "POST", s, "{\"subject\":\"x\"}".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>())
            .expect(400, vf),
        case("create: text/plain", "POST", s, j(json!({"subject": "x"}))).ct(Some("text/plain")).expect(415, "unsupported_media_type"),
        case("create: form", "POST", s, b"subject=x".to_vec())
            .ct(Some("application/x-www-form-urlencoded"))
            .expect(415, "unsupported_media_type"),
        case("create: no content type", "POST", s, j(json!({"subject": "x"}))).ct(None).expect(415, "unsupported_media_type"),
        case("create: merge-patch type on POST", "POST", s, j(json!({"subject": "x"})))
            .ct(Some("application/merge-patch+json"))
            .expect(415, "unsupported_media_type"),
        // ---- elevate / revoke ----
        case("elevate: unknown token", "POST", e, j(json!({"session_token": forged_token("tss_", 5), "auth": {"level": 2}})))
            .expect(401, si),
        case("elevate: 10 KB token", "POST", e, j(json!({"session_token": big_token, "auth": {"level": 2}}))).expect(401, si),
        case("elevate: auth missing", "POST", e, j(json!({"session_token": forged_token("tss_", 5)}))).expect(400, vf).detail("auth"),
        case("elevate: level 0", "POST", e, j(json!({"session_token": forged_token("tss_", 5), "auth": {"level": 0}})))
            .expect(400, vf)
            .detail("level"),
        case("elevate: level \"high\"", "POST", e, j(json!({"session_token": forged_token("tss_", 5), "auth": {"level": "high"}})))
            .expect(400, vf)
            .detail("level"),
        case("elevate: text/plain", "POST", e, b"{}".to_vec()).ct(Some("text/plain")).expect(415, "unsupported_media_type"),
        // ---- refused requests that name the live canary: no partial write ----
        case("elevate canary: level 0", "POST", e, j(json!({"session_token": live_token, "auth": {"level": 0}})))
            .expect(400, vf)
            .detail("level"),
        case("elevate canary: level 10", "POST", e, j(json!({"session_token": live_token, "auth": {"level": 10}})))
            .expect(400, vf)
            .detail("level"),
        case("elevate canary: bad method", "POST", e, j(json!({"session_token": live_token, "auth": {"level": 2, "methods": ["a/b"]}})))
            .expect(400, vf)
            .detail("methods"),
        case("elevate canary: unknown field", "POST", e, j(json!({"session_token": live_token, "auth": {"level": 2}, "x": 1})))
            .expect(400, vf)
            .detail("x"),
        case("elevate canary: text/plain", "POST", e, j(json!({"session_token": live_token, "auth": {"level": 2}})))
            .ct(Some("text/plain"))
            .expect(415, "unsupported_media_type"),
        case("elevate canary: no API key", "POST", e, j(json!({"session_token": live_token, "auth": {"level": 2}})))
            .auth(Auth::Missing)
            .expect(401, "unauthorized"),
        case("revoke canary: form", "POST", r, format!("session_token={live_token}").into_bytes())
            .ct(Some("application/x-www-form-urlencoded"))
            .expect(415, "unsupported_media_type"),
        case("revoke canary: unknown API key", "POST", r, j(json!({"session_token": live_token})))
            .auth(Auth::Raw(format!("Bearer {}", forged_token("tsk_", 9)).into_bytes()))
            .expect(401, "unauthorized"),
        case("login over canary: bad subject", "POST", s, j(json!({"subject": "", "previous_session_token": live_token})))
            .expect(400, vf)
            .detail("subject"),
        case("login over canary: bad ip", "POST", s, j(json!({"subject": "x", "previous_session_token": live_token, "device": {"ip": "x"}})))
            .expect(400, vf)
            .detail("ip"),
        case("login over canary: data too large", "POST", s, j(json!({"subject": "x", "previous_session_token": live_token, "data": {"blob": "z".repeat(20 * 1024)}})))
            .expect(413, "payload_too_large")
            .expect(400, vf),
        case("delete canary: no API key", "DELETE", handle_path.clone(), Vec::new())
            .ct(None)
            .auth(Auth::Missing)
            .expect(401, "unauthorized"),
        case("revoke-all canary: no API key", "DELETE", "/v1/subjects/canary/sessions", Vec::new())
            .ct(None)
            .auth(Auth::Missing)
            .expect(401, "unauthorized"),
        case("revoke: unknown token", "POST", r, j(json!({"session_token": forged_token("tss_", 6)}))).expect(401, si),
        case("revoke: NUL token", "POST", r, j(json!({"session_token": "\u{0}\u{0}"}))).expect(401, si),
        case("revoke: 10 KB token", "POST", r, j(json!({"session_token": big_token}))).expect(401, si),
        case("revoke: token as object", "POST", r, j(json!({"session_token": {"$ne": ""}}))).expect(400, vf).detail("session_token"),
        case("revoke: null body", "POST", r, b"null".to_vec()).expect(400, vf),
        // ---- handles in paths ----
        case("get: dot-segment handle", "GET", "/v1/sessions/ses_../../x", Vec::new()).ct(None).expect(404, "not_found"),
        case("get: encoded dot-segment handle", "GET", "/v1/sessions/ses_..%2F..%2Fx", Vec::new()).ct(None).expect(404, "not_found"),
        case("get: 10 KB handle", "GET", format!("/v1/sessions/ses_{}", "A".repeat(10 * 1024)), Vec::new())
            .ct(None)
            .expect(404, "not_found"),
        case("get: NUL handle", "GET", "/v1/sessions/ses_%00", Vec::new()).ct(None).expect(404, "not_found"),
        case("get: non-UTF-8 handle", "GET", "/v1/sessions/ses_%FF%FE", Vec::new())
            .ct(None)
            .expect(404, "not_found")
            .expect(400, vf),
        case("get: SQL handle", "GET", "/v1/sessions/'%20OR%201=1--", Vec::new()).ct(None).expect(404, "not_found"),
        case("get: token as handle", "GET", format!("/v1/sessions/{}", forged_token("tss_", 8)), Vec::new())
            .ct(None)
            .expect(404, "not_found"),
        case("delete: unknown handle", "DELETE", "/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA", Vec::new())
            .ct(None)
            .expect(404, "not_found"),
        case("delete: NUL handle", "DELETE", "/v1/sessions/%00", Vec::new()).ct(None).expect(404, "not_found"),
        case("patch: unknown handle", "PATCH", "/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAAAA", j(json!({"data": {"a": 1}})))
            .expect(404, "not_found"),
        // ---- PATCH bodies on a live session ----
        case("patch: data array", "PATCH", handle_path.clone(), j(json!({"data": [1]}))).expect(400, vf).detail("data"),
        case("patch: data null", "PATCH", handle_path.clone(), j(json!({"data": null}))).expect(400, vf).detail("data"),
        case("patch: data missing", "PATCH", handle_path.clone(), j(json!({}))).expect(400, vf).detail("data"),
        case("patch: unknown field", "PATCH", handle_path.clone(), j(json!({"data": {}, "subject": "evil"})))
            .expect(400, vf)
            .detail("subject"),
        case("patch: text/plain", "PATCH", handle_path.clone(), j(json!({"data": {"a": 1}})))
            .ct(Some("text/plain"))
            .expect(415, "unsupported_media_type"),
        case("patch: no content type", "PATCH", handle_path.clone(), j(json!({"data": {"a": 1}})))
            .ct(None)
            .expect(415, "unsupported_media_type"),
        case("patch: data grows past 16 KiB", "PATCH", handle_path.clone(), j(json!({"data": {"blob": "y".repeat(20 * 1024)}})))
            .expect(413, "payload_too_large")
            .expect(400, vf),
        case("patch: body > 64 KiB", "PATCH", handle_path.clone(), j(json!({"data": {"blob": "y".repeat(70 * 1024)}})))
            .expect(413, "payload_too_large"),
        case("patch: body > 64 KiB, chunked", "PATCH", handle_path.clone(), j(json!({"data": {"blob": "y".repeat(70 * 1024)}})))
            .chunked()
            .expect(413, "payload_too_large"),
        case("patch: deep nesting", "PATCH", handle_path.clone(), format!("{{\"data\":{{\"a\":{}}}}}", "{\"a\":".repeat(5000)).into_bytes())
            .expect(400, vf),
        case("patch: non-UTF-8", "PATCH", handle_path.clone(), b"{\"data\":{\"a\":\"\xff\"}}".to_vec()).expect(400, vf),
        // ---- subjects in paths ----
        case("list: 257-byte subject", "GET", format!("/v1/subjects/{}/sessions", "s".repeat(257)), Vec::new())
            .ct(None)
            .expect(400, vf)
            .detail("subject"),
        case("list: NUL subject", "GET", "/v1/subjects/a%00b/sessions", Vec::new()).ct(None).expect(400, vf).detail("subject"),
        case("list: non-UTF-8 subject", "GET", "/v1/subjects/%FF/sessions", Vec::new()).ct(None).expect(400, vf),
        case("revoke-all: NUL subject", "DELETE", "/v1/subjects/%00/sessions", Vec::new()).ct(None).expect(400, vf).detail("subject"),
        // A mistyped `except` must not sign the caller out too: the canary
        // subject's sessions are checked intact after the table.
        case("revoke-all canary: malformed except", "DELETE", "/v1/subjects/canary/sessions?except=ses_typo", Vec::new())
            .ct(None)
            .expect(400, vf)
            .detail("except"),
        case("revoke-all canary: empty except", "DELETE", "/v1/subjects/canary/sessions?except=", Vec::new())
            .ct(None)
            .expect(400, vf)
            .detail("except"),
        case("revoke-all: 257-byte subject", "DELETE", format!("/v1/subjects/{}/sessions", "s".repeat(257)), Vec::new())
            .ct(None)
            .expect(400, vf)
            .detail("subject"),
        // ---- events query ----
        case("events: after=abc", "GET", "/v1/events?after=abc", Vec::new()).ct(None).expect(400, vf).detail("after"),
        case("events: after=-1", "GET", "/v1/events?after=-1", Vec::new()).ct(None).expect(400, vf).detail("after"),
        case("events: after=1e3", "GET", "/v1/events?after=1e3", Vec::new()).ct(None).expect(400, vf).detail("after"),
        case("events: after too big", "GET", "/v1/events?after=99999999999999999999999", Vec::new())
            .ct(None)
            .expect(400, vf)
            .detail("after"),
        case("events: limit=0", "GET", "/v1/events?limit=0", Vec::new()).ct(None).expect(400, vf).detail("limit"),
        case("events: limit=1001", "GET", "/v1/events?limit=1001", Vec::new()).ct(None).expect(400, vf).detail("limit"),
        case("events: limit=abc", "GET", "/v1/events?limit=abc", Vec::new()).ct(None).expect(400, vf).detail("limit"),
        case("events: limit=-1", "GET", "/v1/events?limit=-1", Vec::new()).ct(None).expect(400, vf).detail("limit"),
        case("events: NUL subject", "GET", "/v1/events?subject=%00", Vec::new()).ct(None).expect(400, vf).detail("subject"),
        // ---- headers ----
        case("headers: 20 KiB header", "POST", v, j(json!({"session_token": "x"})))
            .header("x-junk", "a".repeat(20 * 1024))
            .expect(431, "headers_too_large"),
        case("headers: 20 KiB Authorization", "GET", "/v1/events", Vec::new())
            .ct(None)
            .auth(Auth::Raw(format!("Bearer {}", "k".repeat(20 * 1024)).into_bytes()))
            .expect(431, "headers_too_large"),
        case("auth: 10 KB bearer", "GET", "/v1/events", Vec::new())
            .ct(None)
            .auth(Auth::Raw(format!("Bearer tsk_{}", "A".repeat(10 * 1024)).into_bytes()))
            .expect(401, "unauthorized"),
        case("auth: non-UTF-8 bearer", "GET", "/v1/events", Vec::new())
            .ct(None)
            .auth(Auth::Raw(b"Bearer tsk_\xff\xfe\xfd".to_vec()))
            .expect(401, "unauthorized"),
        case("auth: missing on create", "POST", s, j(json!({"subject": "x"}))).auth(Auth::Missing).expect(401, "unauthorized"),
        case("auth: SQL bearer", "GET", "/v1/events", Vec::new())
            .ct(None)
            .auth(Auth::Raw(b"Bearer ' OR 1=1--".to_vec()))
            .expect(401, "unauthorized"),
        // ---- methods and routes ----
        case("method: PUT /v1/sessions", "PUT", s, j(json!({"subject": "x"}))).expect(405, "method_not_allowed"),
        case("method: GET /v1/sessions/verify", "GET", v, Vec::new()).ct(None).expect(405, "method_not_allowed"),
        case("method: DELETE /v1/sessions/revoke", "DELETE", r, Vec::new()).ct(None).expect(405, "method_not_allowed"),
        case("method: POST /v1/events", "POST", "/v1/events", j(json!({}))).expect(405, "method_not_allowed"),
        case("method: PUT handle", "PUT", handle_path.clone(), j(json!({"data": {}}))).expect(405, "method_not_allowed"),
        case("method: POST /healthz", "POST", "/healthz", Vec::new()).ct(None).auth(Auth::Missing).expect(405, "method_not_allowed"),
        case("method: OPTIONS /v1/sessions", "OPTIONS", s, Vec::new()).ct(None).expect(405, "method_not_allowed"),
        case("method: TRACE /v1/events", "TRACE", "/v1/events", Vec::new()).ct(None).expect(405, "method_not_allowed"),
        case("route: trailing slash", "POST", "/v1/sessions/", j(json!({"subject": "x"}))).expect(404, "not_found"),
        case("route: empty subject segment", "GET", "/v1/subjects//sessions", Vec::new())
            .ct(None)
            .expect(404, "not_found")
            .expect(400, vf),
        case("events: 10 KB after", "GET", format!("/v1/events?after={}", "1".repeat(10 * 1024)), Vec::new())
            .ct(None)
            .expect(400, vf)
            .detail("after"),
        case("route: unknown", "GET", "/v1/nope", Vec::new()).ct(None).expect(404, "not_found"),
        case("route: unknown, no key", "GET", "/v2/sessions", Vec::new()).ct(None).auth(Auth::Missing).expect(404, "not_found"),
    ]
}

fn head_for(srv: &TestServer, c: &Case) -> Vec<u8> {
    let mut h = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        c.method, c.target, srv.addr
    )
    .into_bytes();
    match &c.auth {
        Auth::Key => h.extend_from_slice(format!("Authorization: Bearer {}\r\n", srv.api_key).as_bytes()),
        Auth::Missing => {}
        Auth::Raw(v) => {
            h.extend_from_slice(b"Authorization: ");
            h.extend_from_slice(v);
            h.extend_from_slice(b"\r\n");
        }
    }
    if let Some(ct) = c.content_type {
        h.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
    }
    for (k, v) in &c.extra_headers {
        h.extend_from_slice(k.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(v);
        h.extend_from_slice(b"\r\n");
    }
    if c.chunked {
        h.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    } else if !c.body.is_empty() || matches!(c.method, "POST" | "PATCH" | "PUT") {
        h.extend_from_slice(format!("Content-Length: {}\r\n", c.body.len()).as_bytes());
    }
    h.extend_from_slice(b"\r\n");
    h
}

/// HTTP/1.1 chunked encoding in 4 KiB chunks.
fn chunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(4096) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn judge(c: &Case, r: &Resp) -> Result<(), String> {
    if r.status >= 500 {
        return Err(format!("5xx: {} {}", r.status, r.text()));
    }
    let Some((_, code)) = c.expect.iter().find(|(st, _)| *st == r.status) else {
        return Err(format!(
            "status {} (expected one of {:?}); body {}",
            r.status,
            c.expect,
            r.text()
        ));
    };
    let p = check_problem(r, code)?;
    if let Some(word) = c.detail {
        let d = p["detail"].as_str().unwrap_or_default();
        // Only rule/type errors must name the field; 413 names no field.
        if *code == "validation_failed" && !d.contains(word) {
            return Err(format!("detail {d:?} does not name {word:?}"));
        }
    }
    if r.status == 405 && r.header("allow").is_none() {
        return Err("405 without an Allow header (RFC 9110 §15.5.6)".to_owned());
    }
    if r.status == 401 && code == &"unauthorized" && r.header("www-authenticate").is_none() {
        return Err("401 unauthorized without WWW-Authenticate".to_owned());
    }
    if c.target.starts_with("/v1/") && r.status != 431 {
        let cc = r.header("cache-control").unwrap_or_default();
        if !cc.contains("no-store") {
            return Err(format!("/v1 response without Cache-Control: no-store ({cc:?})"));
        }
    }
    Ok(())
}

async fn snapshot(srv: &TestServer) -> (usize, Value) {
    let events = srv.all_events("").await.len();
    let r = srv.get("/v1/subjects/canary/sessions").await;
    r.assert_status(200);
    let mut sessions = r.json()["sessions"].clone();
    // Verification of the canary slides these; everything else must match.
    for s in sessions.as_array_mut().unwrap() {
        let o = s.as_object_mut().unwrap();
        o.remove("last_seen_at");
        o.remove("idle_expires_at");
        o["device"].as_object_mut().unwrap().remove("last_seen_at");
    }
    (events, sessions)
}

#[tokio::test]
async fn bad_input_table() {
    let srv = TestServer::start(Opts::default()).await;
    let canary = srv
        .create(
            json!({"subject": "canary", "auth": {"level": 2, "methods": ["pwd", "otp"]}, "data": {"k": "v"}}),
        )
        .await;
    let before = snapshot(&srv).await;
    let table = cases(&canary.handle, &canary.token);
    assert!(table.len() >= 40, "at least 40 cases");

    let mut failures = Vec::new();
    for c in &table {
        let head = head_for(&srv, c);
        let body = if c.chunked { chunk(&c.body) } else { c.body.clone() };
        let r = raw_http(srv.addr, &head, &body).await;
        srv.note_secrets(&r.text());
        if let Err(e) = judge(c, &r) {
            failures.push(format!("[{}] {} {:.80}: {e}", c.name, c.method, c.target));
        }
    }
    // The server is still healthy and answers normally.
    let h = srv.send(srv.http.get(srv.url("/healthz"))).await;
    h.assert_status(200);

    // Nothing was written: same events, same canary sessions, canary alive.
    let after = snapshot(&srv).await;
    if after.0 != before.0 {
        failures.push(format!("event count changed: {} → {}", before.0, after.0));
    }
    if after.1 != before.1 {
        failures.push(format!("canary sessions changed:\n{}\n→\n{}", before.1, after.1));
    }
    let v = srv.assert_verifies(&canary.token).await;
    assert_eq!(v["data"], json!({"k": "v"}), "canary data untouched");
    assert_eq!(v["auth"]["level"], 2);
    let list = srv.get("/v1/subjects/x/sessions").await.json();
    if list["sessions"] != json!([]) {
        failures.push(format!("a refused create left a session for subject x: {list}"));
    }
    let out = format!(
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    if !failures.is_empty() {
        panic!("{out}");
    }
    srv.finish().await;
}
