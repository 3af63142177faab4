//! Load test of refresh-token rotation, for `scripts/bench-refresh`.
//!
//! Creates `C` sessions with tokens (`POST /v1/sessions` with `tokens: {}`,
//! the built-in public client `default`), then runs `C` independent chains
//! for the given duration. Each chain repeatedly POSTs `/oauth2/token`
//! (`grant_type=refresh_token&client_id=default&refresh_token=<its current
//! token>`) and takes the rotated refresh token from the answer — exactly
//! what a client keeping a session alive does, with no pause. Prints the
//! successful rotations per second, latency percentiles and errors.
//!
//! ```text
//! cargo run --release -p tessera-server --example refresh_load -- \
//!     --base http://127.0.0.1:8080 --api-key-file data/bootstrap-api-key \
//!     --concurrency 64 --duration 10 --warmup 2
//! ```
//!
//! Loopback only: a base URL whose host is not 127.0.0.1, ::1 or localhost
//! is refused. Every request has a timeout and the run ends at the deadline
//! whatever happens; a chain whose token is refused (which should never
//! happen) logs in again and carries on, and the refusal counts as an error.
//! The last line is machine-readable:
//! `RESULT rotations_per_sec=N rotations=N errors=N p50_ms=X p99_ms=X secs=X`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(about = "Refresh-token rotation load against a running tessera (loopback only)")]
struct Args {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// An API key (`tsk_…`) for `POST /v1/sessions`.
    #[arg(long, env = "TESSERA_API_KEY")]
    api_key: Option<String>,
    /// A file holding the API key (e.g. `<data_dir>/bootstrap-api-key`).
    #[arg(long)]
    api_key_file: Option<String>,
    /// Independent refresh chains (sessions), each one request in flight.
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds of the same load first.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Deserialize)]
struct Created {
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    refresh_token: Option<String>,
}

/// What one chain saw during the measured window.
#[derive(Default)]
struct ChainStats {
    ok: u64,
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
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

async fn login(http: &reqwest::Client, base: &str, key: &str, i: usize) -> Result<String, String> {
    let body = serde_json::json!({"subject": format!("bench-refresh-{i}"), "tokens": {}});
    let r = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("POST /v1/sessions: {e}"))?;
    let status = r.status();
    let bytes = r
        .bytes()
        .await
        .map_err(|e| format!("POST /v1/sessions body: {e}"))?;
    if status != 201 {
        return Err(format!(
            "POST /v1/sessions answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let c: Created = serde_json::from_slice(&bytes).map_err(|e| format!("POST /v1/sessions JSON: {e}"))?;
    c.refresh_token
        .ok_or_else(|| "POST /v1/sessions with tokens gave no refresh_token".to_owned())
}

/// One rotation: Ok(new refresh token) or Err(error label).
async fn rotate(http: &reqwest::Client, url: &str, rt: &str) -> Result<String, String> {
    // Refresh tokens are base64url: nothing to percent-encode.
    let body = format!("grant_type=refresh_token&client_id=default&refresh_token={rt}");
    let r = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_owned()
            } else {
                "transport".to_owned()
            }
        })?;
    let status = r.status().as_u16();
    let bytes = r.bytes().await.map_err(|_| "body".to_owned())?;
    if status != 200 {
        let code = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(format!("{status} {code}").trim().to_owned());
    }
    serde_json::from_slice::<TokenResponse>(&bytes)
        .ok()
        .and_then(|t| t.refresh_token)
        .ok_or_else(|| "200 without refresh_token".to_owned())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("refresh_load: {e}");
        std::process::exit(1);
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
    if !(0.001..=600.0).contains(&args.duration) || !(0.0..=600.0).contains(&args.warmup) {
        return Err("--duration must be in (0, 600] and --warmup in [0, 600]".into());
    }
    let key = match (&args.api_key, &args.api_key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map_err(|e| format!("{p}: {e}"))?
            .trim()
            .to_owned(),
        (None, None) => return Err("give --api-key or --api-key-file".into()),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs_f64(args.timeout))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;

    // Log in C sessions, 16 at a time.
    let t0 = Instant::now();
    let mut tokens = Vec::with_capacity(args.concurrency);
    for start in (0..args.concurrency).step_by(16) {
        let end = (start + 16).min(args.concurrency);
        let batch = futures::future::join_all((start..end).map(|i| login(&http, &base, &key, i))).await;
        for t in batch {
            tokens.push(t?);
        }
    }
    eprintln!(
        "refresh_load: {} sessions with tokens in {:.2?}; warm-up {:.1} s, then {:.1} s measured",
        tokens.len(),
        t0.elapsed(),
        args.warmup,
        args.duration
    );

    let url = Arc::new(format!("{base}/oauth2/token"));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.duration);
    let fatal = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(tokens.len());
    for (i, rt) in tokens.into_iter().enumerate() {
        let http = http.clone();
        let url = Arc::clone(&url);
        let base = base.clone();
        let key = key.clone();
        let fatal = Arc::clone(&fatal);
        tasks.push(tokio::spawn(async move {
            let mut stats = ChainStats::default();
            let mut rt = rt;
            loop {
                let t = Instant::now();
                if t >= measure_to || fatal.load(Ordering::Relaxed) {
                    break;
                }
                let res = rotate(&http, &url, &rt).await;
                let done = Instant::now();
                let counted = t >= measure_from && done <= measure_to;
                match res {
                    Ok(next) => {
                        rt = next;
                        if counted {
                            stats.ok += 1;
                            let us = done.duration_since(t).as_micros();
                            stats.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        }
                    }
                    Err(label) => {
                        if counted {
                            *stats.errors.entry(label).or_default() += 1;
                        }
                        // The chain's token may be dead: log in again.
                        match login(&http, &base, &key, i).await {
                            Ok(fresh) => rt = fresh,
                            Err(e) => {
                                eprintln!("refresh_load: chain {i}: cannot log in again: {e}");
                                fatal.store(true, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            }
            stats
        }));
    }

    let mut ok = 0u64;
    let mut lat = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let s = t.await.map_err(|e| format!("a chain panicked: {e}"))?;
        ok += s.ok;
        lat.extend(s.latencies_us);
        for (k, v) in s.errors {
            *errors.entry(k).or_default() += v;
        }
    }
    if fatal.load(Ordering::Relaxed) {
        return Err("aborted: a chain could not continue".into());
    }
    lat.sort_unstable();
    let secs = args.duration;
    let rate = ok as f64 / secs;
    let err_total: u64 = errors.values().sum();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    println!(
        "refresh rotations: {ok} in {secs:.1} s = {rate:.0}/s with {} chains; latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        args.concurrency,
        percentile(&lat, 1.0)
    );
    if err_total > 0 {
        println!("errors: {err_total} {errors:?}");
    } else {
        println!("errors: 0");
    }
    println!(
        "RESULT rotations_per_sec={rate:.0} rotations={ok} errors={err_total} p50_ms={p50:.2} p99_ms={p99:.2} secs={secs}"
    );
    Ok(())
}
