use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tessera_core::{EventKind, MemoryStore, RevokeReason, SystemClock};
use tower::ServiceExt;

use crate::Config;
use crate::app::build_with_clock;

fn app() -> crate::App {
    let config = Config {
        store: Some("memory://".into()),
        ..Config::default()
    };
    build_with_clock(config, Arc::new(MemoryStore::new()), Arc::new(SystemClock))
}

fn doc() -> Value {
    serde_json::from_str(super::json()).unwrap()
}

/// Where the committed copy lives, from this crate.
fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

/// The document's path templates in axum's spelling (OpenAPI has no
/// catch-all parameter: `{proxied_path}` is axum's `{*proxied_path}`).
fn documented_paths(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| p.replace("{proxied_path}", "{*proxied_path}"))
        .collect()
}

#[tokio::test]
async fn openapi_json_is_served_without_an_api_key_and_is_openapi_3_1() {
    let res = app()
        .router
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    assert_eq!(
        body,
        super::json().as_bytes(),
        "served as `tessera openapi` prints it"
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
    assert_eq!(v["info"]["title"], "Tessera");
    let schemes = v["components"]["securitySchemes"].as_object().unwrap();
    for s in [super::API_KEY, super::CLIENT_BASIC, super::DPOP] {
        assert!(schemes.contains_key(s), "security scheme {s}");
    }
}

/// `docs/openapi.json` is what the code generates. To update it after a
/// change to the API: `cargo run -p tessera-server -- openapi >
/// docs/openapi.json`, or run this test with `TESSERA_UPDATE_OPENAPI=1`.
#[test]
fn committed_openapi_json_is_what_the_code_generates() {
    let path = committed_path();
    if std::env::var_os("TESSERA_UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, super::json()).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == super::json(),
        "docs/openapi.json differs from the document the code generates; regenerate it with\n  \
         cargo run -p tessera-server -- openapi > docs/openapi.json\n\
         (or TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-server committed_openapi_json)"
    );
}

/// Every route of the router is documented and nothing else is: the
/// document's paths are the edge's route table (which
/// `edge_route_templates_match_the_router` holds to axum's router), and for
/// each path a method is documented exactly when the router has a handler
/// for it rather than its 404/405 fallback.
#[tokio::test]
async fn every_route_of_the_router_is_documented() {
    let app = app();
    let doc = doc();
    let routes = crate::edge::Routes::new(&app.state.oauth.issuer_path);
    let table: BTreeSet<String> = routes.templates().into_iter().map(str::to_owned).collect();
    assert_eq!(
        documented_paths(&doc),
        table,
        "the document's paths are the route table"
    );

    let router = crate::app::routes_without_edge(app.state.clone());
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{handle}", "ses_AAAAAAAAAAAAAAAAAAAAAA")
            .replace("{subject}", "alice")
            .replace("{proxied_path}", "orders/42");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
        ] {
            let documented = item.get(method.as_str().to_ascii_lowercase()).is_some();
            let res = router
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method.clone())
                        .uri(&concrete)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = res.status();
            let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
            let detail = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let fallback = (status == StatusCode::METHOD_NOT_ALLOWED
                && detail.ends_with("is not allowed on this route"))
                || (status == StatusCode::NOT_FOUND && detail.starts_with("no route answers"));
            assert_eq!(
                documented, !fallback,
                "{method} {path}: documented = {documented}, but the router answered {status} {detail:?}"
            );
        }
    }
}

/// Every operation has an id (unique: the validator in
/// `scripts/openapi-check` checks that), a tag, and documents its errors
/// with the shapes the service really writes: problem documents, except
/// RFC 6749 errors on `/oauth2`.
#[test]
fn every_error_answer_has_the_shape_its_endpoint_writes() {
    let doc = doc();
    let responses = &doc["components"]["responses"];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path}: operationId");
            assert!(op["tags"].is_array(), "{method} {path}: tag");
            for (status, answer) in op["responses"].as_object().unwrap() {
                let code: u16 = status.parse().unwrap();
                let answer = match answer["$ref"].as_str() {
                    Some(r) => &responses[r.trim_start_matches("#/components/responses/")],
                    None => answer,
                };
                assert!(answer.is_object(), "{method} {path} {status}: resolves");
                if code < 400 {
                    continue;
                }
                let content = answer["content"].as_object();
                // DBSC's 403 is the bare challenge the draft specifies.
                if path.starts_with("/auth/dbsc/") && code == 403 {
                    assert!(content.is_none());
                    continue;
                }
                let content = content.unwrap_or_else(|| panic!("{method} {path} {status}: a body"));
                let (ct, schema) = if path.starts_with("/oauth2/") {
                    ("application/json", "#/components/schemas/OAuthError")
                } else {
                    (crate::problem::PROBLEM_JSON, "#/components/schemas/Problem")
                };
                assert_eq!(
                    content[ct]["schema"]["$ref"], schema,
                    "{method} {path} {status}: {ct} with {schema}"
                );
                if code == 429 || code == 503 {
                    assert!(
                        answer["headers"]["Retry-After"].is_object(),
                        "{method} {path} {status}: Retry-After"
                    );
                }
            }
        }
    }
}

/// The rate-limited endpoints (abuse limits, GN-04) and every endpoint that
/// reads the store document 429 and 503.
#[test]
fn rate_limited_and_store_backed_endpoints_document_429_and_503() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let limited = path.starts_with("/v1/")
            || path.starts_with("/auth/dbsc/")
            || ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"].contains(&path.as_str());
        let store = limited || path.starts_with("/auth/") || path == "/readyz";
        for (method, op) in item.as_object().unwrap() {
            let r = &op["responses"];
            if limited {
                assert!(r["429"].is_object(), "{method} {path}: 429");
            }
            if store {
                assert!(r["503"].is_object(), "{method} {path}: 503");
            }
        }
    }
}

/// The schema twins' enums name what the core writes.
#[test]
fn documented_enums_are_the_cores() {
    let doc = doc();
    let names = |schema: &str| -> Vec<String> {
        doc["components"]["schemas"][schema]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} is an enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let kinds: Vec<String> = EventKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
    assert_eq!(names("EventKind"), kinds);
    let reasons: Vec<String> = RevokeReason::ALL
        .iter()
        .map(|r| serde_json::to_value(r).unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names("RevokeReason"), reasons);
    // The `kind` filter of GET /v1/events: every kind, or empty.
    let params = doc["paths"]["/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let kind = params.iter().find(|p| p["name"] == "kind").unwrap();
    let pattern = kind["schema"]["pattern"].as_str().unwrap();
    let alternatives: Vec<&str> = pattern
        .trim_start_matches("^(")
        .trim_end_matches(")$")
        .split('|')
        .collect();
    let mut expected = vec![""];
    expected.extend(kinds.iter().map(String::as_str));
    assert_eq!(alternatives, expected);
}
