//! In-process tests (`oneshot`) of forward auth over `memory://`, named
//! after the standards-checklist items they pin: `verify` (the endpoint),
//! `csrf` (its CSRF adapter and logout's), `logout`. The rule itself is
//! tested in `tessera_http::csrf`, and both faces side by side in the
//! integration test `parity`.

use std::ffi::OsString;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use tessera_core::{AuthInput, CreateSession, ManualClock, MemoryStore, Store, Timestamp};
use tower::ServiceExt;

use crate::app::{AppState, build_with_clock};
use crate::config::{Config, Overrides};
use crate::problem::PROBLEM_JSON;

mod csrf;
mod logout;
mod verify;

const HOST: &str = "app.example";
const OWN_ORIGIN: &str = "https://app.example";

struct H {
    router: Router,
    state: AppState,
    clock: ManualClock,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[track_caller]
    fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.header("content-type"), Some(PROBLEM_JSON));
        assert_eq!(self.body["code"], code, "{:?}", self.body);
        assert_eq!(self.body["type"], format!("urn:tessera:error:{code}"));
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
    }

    #[track_caller]
    fn assert_no_store(&self) {
        assert_eq!(
            self.header("cache-control"),
            Some("no-store"),
            "status {}",
            self.status
        );
    }
}

fn config() -> Config {
    Config {
        store: Some("memory://".into()),
        ..Config::default()
    }
}

fn harness_with(config: Config) -> H {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let app = build_with_clock(config, store, Arc::new(clock.clone()));
    H {
        router: app.router,
        state: app.state,
        clock,
    }
}

fn harness() -> H {
    harness_with(config())
}

impl H {
    fn cookie_name(&self) -> String {
        self.state.config.cookie.effective_name().to_owned()
    }

    fn cookie(&self, token: &str) -> String {
        format!("{}={token}", self.cookie_name())
    }

    async fn login(&self, subject: &str, level: u8) -> (String, String) {
        let issued = self
            .state
            .sessions
            .create(CreateSession {
                subject: subject.into(),
                auth: Some(AuthInput {
                    level: Some(level),
                    methods: if level > 1 {
                        vec!["pwd".into(), "otp".into()]
                    } else {
                        vec!["pwd".into()]
                    },
                }),
                ..CreateSession::default()
            })
            .await
            .unwrap();
        (issued.token.expose().to_owned(), issued.session.handle.clone())
    }

    async fn send(&self, method: Method, uri: &str, headers: &[(&str, &str)]) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let res = self
            .router
            .clone()
            .oneshot(b.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `GET /auth/verify` as a proxy asks it about a `method` request.
    async fn verify_as(&self, uri: &str, method: &str, headers: &[(&str, &str)]) -> Resp {
        let mut all = vec![("x-original-method", method), ("host", HOST)];
        all.extend_from_slice(headers);
        self.send(Method::GET, uri, &all).await
    }

    async fn logout(&self, uri: &str, headers: &[(&str, &str)]) -> Resp {
        let mut all = vec![("host", HOST)];
        all.extend_from_slice(headers);
        self.send(Method::POST, uri, &all).await
    }

    async fn is_live(&self, token: &str) -> bool {
        self.state.sessions.verify(token).await.is_ok()
    }
}

fn attrs(set_cookie: &str) -> Vec<String> {
    let mut v: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.starts_with("Max-Age="))
        .collect();
    v.sort();
    v
}

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

impl H {
    fn clock_now(&self) -> Timestamp {
        use tessera_core::Clock;
        self.clock.now()
    }
}
