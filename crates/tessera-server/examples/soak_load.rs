//! Mixed-traffic load for `scripts/soak`: a fixed number of simulated users,
//! each going round one session's life as fast as the server answers.
//!
//! One round of a user (29 requests):
//!
//! 1. `login` — `POST /v1/sessions` with `tokens: {}` (a session, an access
//!    token and a refresh token for the built-in public client `default`);
//! 2. four times: `verify` (`POST /v1/sessions/verify`), `forward_cookie`
//!    (`GET /auth/verify` with the session cookie) and `forward_bearer`
//!    (`GET /auth/verify` with `Authorization: Bearer <access token>`);
//! 3. `refresh` — `POST /oauth2/token`, `grant_type=refresh_token`, taking
//!    the rotated refresh token and the new access token;
//! 4. step 2 again, then step 3 again;
//! 5. `revoke` — `POST /v1/sessions/revoke`;
//! 6. `verify_revoked` — `POST /v1/sessions/verify` of the revoked token,
//!    whose expected answer is 401 `session_revoked`.
//!
//! Every answer other than the expected one (status, and for
//! `verify_revoked` the problem code), every transport error and every
//! timeout counts as an error of its operation; the user then starts a new
//! round. Sessions are created with a 60 s idle timeout so the sweeper
//! deletes them during the run, as it would in a steady deployment.
//!
//! Prints `MEASURE_START` on stdout when the warm-up ends (`scripts/soak`
//! samples the server's RSS and descriptors then), then at the end one
//! line per operation and a total, machine-readable:
//! `RESULT op=verify count=N rps=X p50_ms=X p99_ms=X p999_ms=X max_ms=X errors=N`
//! and `TOTAL requests=N rps=X errors=N secs=X`. Errors are counted over the
//! whole run, warm-up included; latencies and rates over the measured part.
//!
//! Loopback only: a base URL whose host is not 127.0.0.1, ::1 or localhost
//! is refused. Every request has a timeout and the run ends at its deadline.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Mixed session traffic against a running tessera (loopback only)")]
struct Args {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// A file holding the API key (e.g. `<data_dir>/bootstrap-api-key`).
    #[arg(long)]
    api_key_file: String,
    /// Simulated users, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 300.0)]
    duration: f64,
    /// Unmeasured seconds of the same load first.
    #[arg(long, default_value_t = 10.0)]
    warmup: f64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

const OPS: [&str; 7] = [
    "login",
    "verify",
    "forward_cookie",
    "forward_bearer",
    "refresh",
    "revoke",
    "verify_revoked",
];

/// What one user saw.
#[derive(Default)]
struct Stats {
    /// Per operation: latencies (µs) of the measured successes.
    lat: BTreeMap<&'static str, Vec<u32>>,
    /// Per operation: errors, by label.
    errors: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

struct User {
    http: reqwest::Client,
    base: String,
    key: String,
    id: usize,
    measure_from: Instant,
    measure_to: Instant,
    stats: Stats,
}

/// A session being used.
struct Sess {
    token: String,
    access: String,
    refresh: String,
}

/// An answer: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl User {
    /// Sends, times and classifies one request. `Ok` only if `expect`
    /// accepts the answer; the error has already been counted.
    async fn op(
        &mut self,
        name: &'static str,
        rb: reqwest::RequestBuilder,
        expect: impl Fn(&Answer) -> bool,
    ) -> Result<Answer, ()> {
        let t = Instant::now();
        let res = async {
            let r = rb.send().await?;
            let status = r.status().as_u16();
            let body = r.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Answer { status, body })
        }
        .await;
        let done = Instant::now();
        let label = match &res {
            Ok(a) if expect(a) => None,
            Ok(a) => Some(format!("{} {}", a.status, problem_code(&a.body))),
            Err(e) if e.is_timeout() => Some("timeout".to_owned()),
            Err(_) => Some("transport".to_owned()),
        };
        match (label, res) {
            (None, Ok(a)) => {
                if t >= self.measure_from && done <= self.measure_to {
                    let us = u32::try_from(done.duration_since(t).as_micros()).unwrap_or(u32::MAX);
                    self.stats.lat.entry(name).or_default().push(us);
                }
                Ok(a)
            }
            (label, _) => {
                let label = label.unwrap_or_else(|| "?".to_owned());
                *self
                    .stats
                    .errors
                    .entry(name)
                    .or_default()
                    .entry(label)
                    .or_default() += 1;
                Err(())
            }
        }
    }

    async fn login(&mut self, n: u64) -> Result<Sess, ()> {
        let body = json!({
            "subject": format!("soak-{}-{n}", self.id),
            "ttl": {"idle_secs": 60},
            "tokens": {},
        });
        let rb = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .bearer_auth(&self.key)
            .json(&body);
        let a = self.op("login", rb, |a| a.status == 201).await?;
        let v: Value = serde_json::from_slice(&a.body).map_err(|_| ())?;
        let field = |k: &str| v[k].as_str().map(str::to_owned);
        match (
            field("session_token"),
            field("access_token"),
            field("refresh_token"),
        ) {
            (Some(token), Some(access), Some(refresh)) => Ok(Sess {
                token,
                access,
                refresh,
            }),
            _ => {
                self.count_error("login", "201 without the tokens");
                Err(())
            }
        }
    }

    fn count_error(&mut self, op: &'static str, label: &str) {
        *self
            .stats
            .errors
            .entry(op)
            .or_default()
            .entry(label.to_owned())
            .or_default() += 1;
    }

    async fn verify(&mut self, token: &str) -> Result<(), ()> {
        let rb = self
            .http
            .post(format!("{}/v1/sessions/verify", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"session_token": token}));
        self.op("verify", rb, |a| a.status == 200).await.map(drop)
    }

    async fn forward_cookie(&mut self, token: &str) -> Result<(), ()> {
        let rb = self
            .http
            .get(format!("{}/auth/verify", self.base))
            .header("cookie", format!("__Host-tessera={token}"))
            .header("x-forwarded-method", "GET");
        self.op("forward_cookie", rb, |a| a.status == 200).await.map(drop)
    }

    async fn forward_bearer(&mut self, access: &str) -> Result<(), ()> {
        let rb = self
            .http
            .get(format!("{}/auth/verify", self.base))
            .bearer_auth(access)
            .header("x-forwarded-method", "GET");
        self.op("forward_bearer", rb, |a| a.status == 200).await.map(drop)
    }

    async fn refresh(&mut self, s: &mut Sess) -> Result<(), ()> {
        // Refresh tokens are base64url: nothing to percent-encode.
        let rb = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&client_id=default&refresh_token={}",
                s.refresh
            ));
        let a = self.op("refresh", rb, |a| a.status == 200).await?;
        let v: Value = serde_json::from_slice(&a.body).map_err(|_| ())?;
        match (v["refresh_token"].as_str(), v["access_token"].as_str()) {
            (Some(rt), Some(at)) => {
                s.refresh = rt.to_owned();
                s.access = at.to_owned();
                Ok(())
            }
            _ => {
                self.count_error("refresh", "200 without the tokens");
                Err(())
            }
        }
    }

    async fn revoke(&mut self, token: &str) -> Result<(), ()> {
        let rb = self
            .http
            .post(format!("{}/v1/sessions/revoke", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"session_token": token}));
        self.op("revoke", rb, |a| a.status == 204).await.map(drop)
    }

    async fn verify_revoked(&mut self, token: &str) -> Result<(), ()> {
        let rb = self
            .http
            .post(format!("{}/v1/sessions/verify", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"session_token": token}));
        self.op("verify_revoked", rb, |a| {
            a.status == 401 && problem_code(&a.body) == "session_revoked"
        })
        .await
        .map(drop)
    }

    /// One round; stops at the first error (the caller starts another).
    async fn round(&mut self, n: u64) -> Result<(), ()> {
        let mut s = self.login(n).await?;
        for _ in 0..2 {
            for _ in 0..4 {
                self.verify(&s.token).await?;
                self.forward_cookie(&s.token).await?;
                self.forward_bearer(&s.access).await?;
            }
            self.refresh(&mut s).await?;
        }
        self.revoke(&s.token).await?;
        self.verify_revoked(&s.token).await
    }

    async fn run(mut self) -> Stats {
        let mut n = 0u64;
        while Instant::now() < self.measure_to {
            n += 1;
            // An error was counted where it happened; a new round follows.
            let _ = self.round(n).await;
        }
        self.stats
    }
}

/// The `code` of an RFC 9457 problem document, or the `error` of an OAuth
/// error, or "".
fn problem_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v["code"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn is_loopback(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `p` quantile (nearest rank) of sorted latencies, in ms.
fn quantile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("soak_load: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let args = Args::parse();
    let base = args.base.trim_end_matches('/').to_owned();
    if !is_loopback(&base) {
        return Err(format!("{base}: only http:// on a loopback address is allowed"));
    }
    if args.concurrency == 0 || args.concurrency > 4096 {
        return Err("--concurrency must be 1..=4096".into());
    }
    if !(1.0..=86_400.0).contains(&args.duration) || !(0.0..=600.0).contains(&args.warmup) {
        return Err("--duration must be in [1, 86400] and --warmup in [0, 600]".into());
    }
    let key = std::fs::read_to_string(&args.api_key_file)
        .map_err(|e| format!("{}: {e}", args.api_key_file))?
        .trim()
        .to_owned();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs_f64(args.timeout))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.duration);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|id| {
            let user = User {
                http: http.clone(),
                base: base.clone(),
                key: key.clone(),
                id,
                measure_from,
                measure_to,
                stats: Stats::default(),
            };
            tokio::spawn(user.run())
        })
        .collect();
    eprintln!(
        "soak_load: {} users against {base}; warm-up {:.0} s, then {:.0} s measured",
        args.concurrency, args.warmup, args.duration
    );
    tokio::time::sleep_until(measure_from.into()).await;
    println!("MEASURE_START");
    let _ = std::io::stdout().flush();

    let mut lat: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    let mut errors: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for t in tasks {
        let s = t.await.map_err(|e| format!("a user task panicked: {e}"))?;
        for (op, v) in s.lat {
            lat.entry(op).or_default().extend(v);
        }
        for (op, m) in s.errors {
            for (label, n) in m {
                *errors.entry(op).or_default().entry(label).or_default() += n;
            }
        }
    }
    let secs = args.duration;
    let mut total = 0u64;
    let mut total_errors = 0u64;
    println!("MEASURE_END");
    for op in OPS {
        let mut v = lat.remove(op).unwrap_or_default();
        v.sort_unstable();
        let errs = errors.get(op).map_or(0, |m| m.values().sum::<u64>());
        total += v.len() as u64;
        total_errors += errs;
        println!(
            "RESULT op={op} count={} rps={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2} errors={errs}",
            v.len(),
            v.len() as f64 / secs,
            quantile_ms(&v, 0.50),
            quantile_ms(&v, 0.99),
            quantile_ms(&v, 0.999),
            quantile_ms(&v, 1.0),
        );
        if let Some(m) = errors.get(op) {
            for (label, n) in m {
                println!("ERROR op={op} answer={label:?} count={n}");
            }
        }
    }
    println!(
        "TOTAL requests={total} rps={:.0} errors={total_errors} secs={secs}",
        total as f64 / secs
    );
    Ok(())
}
