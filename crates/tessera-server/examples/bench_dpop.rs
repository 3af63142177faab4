//! Load test of forward auth with access tokens, for `scripts/bench-dpop`:
//! `GET /auth/verify` with `Authorization: DPoP <token>` and a fresh,
//! single-use proof per request (mode `dpop`), or the same loop with an
//! unbound token as `Authorization: Bearer <token>` (mode `bearer`).
//!
//! wrk's Lua cannot sign, so this is its own load generator: C tasks, each
//! owning one HTTP/1.1 keep-alive connection (hyper's low-level client, no
//! pool), send `GET /auth/verify` back to back, as nginx's `auth_request`
//! would for a proxied `GET <--url>` (`X-Original-Method`, `X-Original-URL`).
//!
//! ```text
//! cargo run --release -p tessera-server --example bench_dpop -- \
//!     --base http://127.0.0.1:8080 --api-key-file data/bootstrap-api-key \
//!     --mode dpop --connections 64 --duration 10
//! ```
//!
//! Steps, all on loopback (any other host is refused):
//! 1. Creates the session: `POST /v1/sessions` with `tokens: {"dpop_jkt":
//!    <RFC 7638 thumbprint of a key made here>}` (dpop) or `tokens: {}`
//!    (bearer), and checks that one request answers 200.
//! 2. Warm-up (`--warmup` s) on C fresh connections. In dpop mode its
//!    proofs are signed beforehand too (`--warmup-proofs`); if they run out
//!    first, the warm-up ends there, and either way its rate sizes the
//!    measured run's pool: `rate × (settle + duration) × 2 + 4 C` proofs
//!    (or exactly `--proofs N`); twice, because on a shared machine the
//!    warm-up may run while another process takes half the cores.
//! 3. Pre-signs that pool (distinct `jti`, `iat` = now, `ath` = the token's
//!    hash; on `--threads` OS threads, while the server is idle) — none of
//!    this is measured. The server must accept proofs that old: run it with
//!    `TESSERA_DPOP_MAX_AGE_SECS=300` (the default 60 s window is enough
//!    only when signing plus the run fit in it).
//! 4. The measured run on C fresh connections (the server closes
//!    connections idle for `[http] header_read_timeout_secs`, and signing
//!    may take longer): `--settle` s unmeasured, then `--duration` s
//!    measured. A request counts when it started and finished inside the
//!    measured window. Running out of proofs there is an error.
//!
//! Prints requests/s, latency percentiles, the non-200 count (must be 0:
//! the exit status is 1 otherwise) and how much of the machine's CPU this
//! process, the server (`--server-pid`) and everything else used during
//! the measured window (from `/proc`; both share the machine's cores). The
//! last line is machine-readable:
//! `RESULT mode=… rps=N requests=N non200=N errors=N p50_ms=X p99_ms=X
//! secs=X gen_cpu=N server_cpu=N other_cpu=N proofs=N sign_secs=X`
//! (CPU figures in percent of all cores, or `?`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tessera_core::b64url;
use tessera_core::dpop::{PublicJwk, jwk_thumbprint};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `Authorization: DPoP` + one pre-signed proof per request.
    Dpop,
    /// `Authorization: Bearer`, unbound token, no proof.
    Bearer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Alg {
    /// ECDSA P-256 (the usual DPoP key, e.g. WebCrypto's).
    Es256,
    /// Ed25519.
    Eddsa,
}

#[derive(Parser, Debug)]
#[command(about = "GET /auth/verify load with DPoP proofs or Bearer tokens (loopback only)")]
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
    #[arg(long, value_enum)]
    mode: Mode,
    /// The proof key's algorithm (dpop mode).
    #[arg(long, value_enum, default_value = "es256")]
    alg: Alg,
    /// Concurrent connections, one request in flight on each.
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// Worker threads of the client runtime, and signing threads.
    #[arg(long, short = 't', default_value_t = 2)]
    threads: usize,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds of load first (sizes the proof pool).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Proofs signed for the warm-up (dpop mode).
    #[arg(long, default_value_t = 60_000)]
    warmup_proofs: usize,
    /// Unmeasured seconds on the measured run's fresh connections.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Proofs for the measured run; 0 sizes the pool from the warm-up.
    #[arg(long, default_value_t = 0)]
    proofs: usize,
    /// The proxied request's URL (`X-Original-URL`, the proofs' `htu`).
    #[arg(long, default_value = "https://app.example/x")]
    url: String,
    /// The server's process id, to report its CPU share.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Deserialize)]
struct Created {
    access_token: Option<String>,
    token_type: Option<String>,
}

fn loopback_addr(base: &str) -> Option<SocketAddr> {
    let rest = base.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let addr: SocketAddr = authority.replace("localhost", "127.0.0.1").parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

enum Key {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Key {
    fn new(alg: Alg) -> Result<Key, String> {
        let rng = SystemRandom::new();
        Ok(match alg {
            Alg::Es256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|e| e.to_string())?;
                Key::Es256(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                        .map_err(|e| e.to_string())?,
                )
            }
            Alg::Eddsa => {
                let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
                Key::Ed25519(Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| e.to_string())?)
            }
        })
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::Ed25519(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> serde_json::Value {
        match self {
            Key::Es256(k) => {
                let p = k.public_key().as_ref();
                serde_json::json!({"kty": "EC", "crv": "P-256",
                    "x": b64url::encode(&p[1..33]), "y": b64url::encode(&p[33..65])})
            }
            Key::Ed25519(k) => serde_json::json!({"kty": "OKP", "crv": "Ed25519",
                "x": b64url::encode(k.public_key().as_ref())}),
        }
    }

    fn jkt(&self) -> Result<String, String> {
        let jwk = PublicJwk::from_json(&self.jwk().to_string()).map_err(|e| e.to_string())?;
        Ok(jwk_thumbprint(&jwk))
    }

    fn sign(&self, rng: &SystemRandom, input: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Key::Es256(k) => k
                .sign(rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| e.to_string()),
            Key::Ed25519(k) => Ok(k.sign(input).as_ref().to_vec()),
        }
    }
}

/// What every proof of a run shares.
struct ProofMaker {
    key: Key,
    header_b64: String,
    /// `"htu":"…","ath":"…"`, already JSON.
    fixed_claims: String,
    /// Makes each run's `jti`s distinct from every other run's.
    jti_prefix: String,
}

impl ProofMaker {
    fn new(key: Key, htu: &str, access_token: &str) -> Result<ProofMaker, String> {
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": key.jwk()});
        let ath = b64url::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes()).as_ref(),
        );
        let htu = serde_json::to_string(htu).map_err(|e| e.to_string())?;
        let mut prefix = [0u8; 9];
        SystemRandom::new().fill(&mut prefix).map_err(|e| e.to_string())?;
        Ok(ProofMaker {
            header_b64: b64url::encode(header.to_string().as_bytes()),
            fixed_claims: format!(r#""htm":"GET","htu":{htu},"ath":"{ath}""#),
            jti_prefix: b64url::encode(&prefix),
            key,
        })
    }

    /// Proofs `from..to`, signed on `threads` OS threads.
    fn sign_range(&self, from: usize, to: usize, threads: usize) -> Result<Vec<HeaderValue>, String> {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let threads = threads.max(1);
        let per = (to - from).div_ceil(threads).max(1);
        let chunks: Vec<Result<Vec<HeaderValue>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = (from + t * per).min(to);
                    let hi = (lo + per).min(to);
                    s.spawn(move || {
                        let rng = SystemRandom::new();
                        (lo..hi)
                            .map(|i| {
                                let claims = format!(
                                    r#"{{"jti":"{}-{i:x}",{},"iat":{iat}}}"#,
                                    self.jti_prefix, self.fixed_claims
                                );
                                let input =
                                    format!("{}.{}", self.header_b64, b64url::encode(claims.as_bytes()));
                                let sig = self.key.sign(&rng, input.as_bytes())?;
                                HeaderValue::try_from(format!("{input}.{}", b64url::encode(&sig)))
                                    .map_err(|e| e.to_string())
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a signing thread panicked".into()))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(to - from);
        for c in chunks {
            out.extend(c?);
        }
        Ok(out)
    }
}

/// The request every task of a stage sends, and the stage's proofs.
struct Job {
    host: HeaderValue,
    authorization: HeaderValue,
    original_url: HeaderValue,
    proofs: Vec<HeaderValue>,
    next: AtomicUsize,
    dpop: bool,
}

const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const DPOP: HeaderName = HeaderName::from_static("dpop");

impl Job {
    /// The next request, or `None` when the proofs have run out.
    fn request(&self) -> Option<Request<Empty<Bytes>>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = Uri::from_static("/auth/verify");
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(AUTHORIZATION, self.authorization.clone());
        h.insert(X_ORIGINAL_METHOD, HeaderValue::from_static("GET"));
        h.insert(X_ORIGINAL_URL, self.original_url.clone());
        if self.dpop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            h.insert(DPOP, self.proofs.get(i)?.clone());
        }
        Some(req)
    }
}

/// What one connection saw in a stage.
#[derive(Default)]
struct Stats {
    /// Requests answered 200 inside the measured window.
    ok: u64,
    /// Requests answered otherwise inside the window, and the first such
    /// answer's status.
    non200: u64,
    first_non200: Option<u16>,
    /// Transport errors (any time in the stage).
    errors: u64,
    /// All answers in the stage, measured or not (the warm-up's rate).
    answered: u64,
    latencies_us: Vec<u32>,
    ran_out: bool,
    /// When this connection stopped sending.
    stopped: Option<Instant>,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request: its status, or a transport error.
async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> Result<(u16, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

async fn drive(addr: SocketAddr, job: Arc<Job>, measure_from: Instant, end: Instant) -> Stats {
    let mut st = Stats {
        latencies_us: Vec::with_capacity(4096),
        ..Stats::default()
    };
    let mut sender = match connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench_dpop: {e}");
            st.errors += 1;
            return st;
        }
    };
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        let Some(req) = job.request() else {
            st.ran_out = true;
            break;
        };
        let res = send(&mut sender, req).await;
        let done = Instant::now();
        let counted = t >= measure_from && done <= end;
        match res {
            Ok((status, _)) => {
                st.answered += 1;
                if !counted {
                    continue;
                }
                if status == 200 {
                    st.ok += 1;
                } else {
                    st.non200 += 1;
                    st.first_non200.get_or_insert(status);
                }
                let us = done.duration_since(t).as_micros();
                st.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(e) => {
                st.errors += 1;
                if st.errors == 1 {
                    eprintln!("bench_dpop: transport error: {e}");
                }
                // The connection is gone: a new one, or give up.
                match connect(addr).await {
                    Ok(s) => sender = s,
                    Err(_) => break,
                }
            }
        }
    }
    st.stopped = Some(Instant::now());
    st
}

/// All-core busy and total ticks since boot (`/proc/stat`), and one
/// process's user+system ticks: the same accounting as scripts/lib/bench.sh.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some((busy, busy + v.get(3)? + v.get(4)?))
}

fn proc_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is 3rd,
    // utime the 14th, stime the 15th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let v: Vec<&str> = rest.split_whitespace().collect();
    Some(v.get(11)?.parse::<u64>().ok()? + v.get(12)?.parse::<u64>().ok()?)
}

struct CpuSample {
    machine: Option<(u64, u64)>,
    me: Option<u64>,
    server: Option<u64>,
}

fn cpu_sample(server_pid: Option<u32>) -> CpuSample {
    CpuSample {
        machine: machine_ticks(),
        me: proc_ticks("self"),
        server: server_pid.and_then(|p| proc_ticks(&p.to_string())),
    }
}

/// (this process, the server, everything else) in percent of all cores.
fn cpu_shares(a: &CpuSample, b: &CpuSample) -> (String, String, String) {
    let pct = |x: Option<u64>, total: u64| match x {
        Some(x) if total > 0 => format!("{}", (100 * x + total / 2) / total),
        _ => "?".to_owned(),
    };
    let Some(((b0, t0), (b1, t1))) = a.machine.zip(b.machine) else {
        return ("?".into(), "?".into(), "?".into());
    };
    let total = t1.saturating_sub(t0);
    let busy = b1.saturating_sub(b0);
    let me = a.me.zip(b.me).map(|(x, y)| y.saturating_sub(x));
    let server = a.server.zip(b.server).map(|(x, y)| y.saturating_sub(x));
    let other = match (me, server) {
        (Some(m), Some(s)) => Some(busy.saturating_sub(m + s)),
        _ => None,
    };
    (pct(me, total), pct(server, total), pct(other, total))
}

struct StageResult {
    stats: Stats,
    /// From the stage's start to the last connection's stop.
    elapsed: Duration,
}

async fn stage(
    addr: SocketAddr,
    job: Arc<Job>,
    connections: usize,
    unmeasured: Duration,
    measured: Duration,
    server_pid: Option<u32>,
) -> Result<(StageResult, Option<(CpuSample, CpuSample)>), String> {
    let start = Instant::now();
    let measure_from = start + unmeasured;
    let end = measure_from + measured;
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(drive(addr, Arc::clone(&job), measure_from, end)))
        .collect();
    let cpu = if measured.is_zero() {
        None
    } else {
        tokio::time::sleep_until(measure_from.into()).await;
        let a = cpu_sample(server_pid);
        tokio::time::sleep_until(end.into()).await;
        Some((a, cpu_sample(server_pid)))
    };
    let mut total = Stats::default();
    let mut last_stop = start;
    for t in tasks {
        // Every request gets at most this long past the end: a loop that
        // never ends would be a hang, not a figure.
        let s = tokio::time::timeout_at((end + Duration::from_secs(10)).into(), t)
            .await
            .map_err(|_| "a connection did not finish within 10 s of the end".to_owned())?
            .map_err(|e| format!("a connection task failed: {e}"))?;
        total.ok += s.ok;
        total.non200 += s.non200;
        if total.first_non200.is_none() {
            total.first_non200 = s.first_non200;
        }
        total.errors += s.errors;
        total.answered += s.answered;
        total.ran_out |= s.ran_out;
        total.latencies_us.extend(s.latencies_us);
        if let Some(at) = s.stopped {
            last_stop = last_stop.max(at);
        }
    }
    Ok((
        StageResult {
            stats: total,
            elapsed: last_stop.duration_since(start),
        },
        cpu,
    ))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let result = match rt {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => Err(format!("runtime: {e}")),
    };
    if let Err(e) = result {
        eprintln!("bench_dpop: {e}");
        std::process::exit(1);
    }
}

async fn create_session(base: &str, api_key: &str, tokens: serde_json::Value) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let r = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(api_key)
        .json(&serde_json::json!({"subject": "bench", "tokens": tokens}))
        .send()
        .await
        .map_err(|e| format!("POST /v1/sessions: {e}"))?;
    let status = r.status();
    let bytes = r.bytes().await.map_err(|e| e.to_string())?;
    if status != 201 {
        return Err(format!(
            "POST /v1/sessions answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let c: Created = serde_json::from_slice(&bytes).map_err(|e| format!("POST /v1/sessions JSON: {e}"))?;
    eprintln!(
        "bench_dpop: session created, token_type {}",
        c.token_type.as_deref().unwrap_or("?")
    );
    c.access_token
        .ok_or_else(|| "POST /v1/sessions with tokens gave no access_token".to_owned())
}

async fn run(args: Args) -> Result<(), String> {
    let base = args.base.trim_end_matches('/').to_owned();
    let addr = loopback_addr(&base)
        .ok_or_else(|| format!("{base}: only http://<loopback address>:<port> is allowed"))?;
    if args.connections == 0 || args.connections > 4096 {
        return Err("--connections must be 1..=4096".into());
    }
    if !(0.1..=600.0).contains(&args.duration)
        || !(0.0..=600.0).contains(&args.warmup)
        || !(0.0..=60.0).contains(&args.settle)
    {
        return Err("--duration must be in [0.1, 600], --warmup in [0, 600], --settle in [0, 60]".into());
    }
    let api_key = match (&args.api_key, &args.api_key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map_err(|e| format!("{p}: {e}"))?
            .trim()
            .to_owned(),
        (None, None) => return Err("give --api-key or --api-key-file".into()),
    };
    let dpop = args.mode == Mode::Dpop;
    let (token, maker) = if dpop {
        let key = Key::new(args.alg)?;
        let token = create_session(&base, &api_key, serde_json::json!({"dpop_jkt": key.jkt()?})).await?;
        let maker = ProofMaker::new(key, &args.url, &token)?;
        (token, Some(maker))
    } else {
        (
            create_session(&base, &api_key, serde_json::json!({})).await?,
            None,
        )
    };
    let scheme = if dpop { "DPoP" } else { "Bearer" };
    let new_job = |proofs: Vec<HeaderValue>| -> Result<Arc<Job>, String> {
        Ok(Arc::new(Job {
            host: HeaderValue::try_from(addr.to_string()).map_err(|e| e.to_string())?,
            authorization: HeaderValue::try_from(format!("{scheme} {token}")).map_err(|e| e.to_string())?,
            original_url: HeaderValue::try_from(args.url.as_str()).map_err(|e| e.to_string())?,
            proofs,
            next: AtomicUsize::new(0),
            dpop,
        }))
    };
    let mut signed = 0usize;
    let mut sign = |n: usize| -> Result<(Vec<HeaderValue>, Duration), String> {
        let t = Instant::now();
        let v = match &maker {
            Some(m) => m.sign_range(signed, signed + n, args.threads)?,
            None => Vec::new(),
        };
        signed += n;
        Ok((v, t.elapsed()))
    };

    // One request first: a setup fault shows as its answer, not as a
    // run of non-200s.
    {
        let job = new_job(sign(1)?.0)?;
        let mut sender = connect(addr).await?;
        let req = job.request().ok_or("no proof")?;
        let (status, body) = send(&mut sender, req).await?;
        if status != 200 {
            return Err(format!(
                "GET /auth/verify ({scheme}) answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }

    // Warm-up, which also measures the rate the pool must last at.
    let (warm_proofs, warm_sign) = sign(if dpop { args.warmup_proofs.max(1) } else { 0 })?;
    let (warm, _) = stage(
        addr,
        new_job(warm_proofs)?,
        args.connections,
        Duration::from_secs_f64(args.warmup),
        Duration::ZERO,
        None,
    )
    .await?;
    let warm_rate = warm.stats.answered as f64 / warm.elapsed.as_secs_f64().max(1e-3);
    eprintln!(
        "bench_dpop: warm-up {} requests in {:.2} s ({warm_rate:.0}/s){}{}",
        warm.stats.answered,
        warm.elapsed.as_secs_f64(),
        if dpop {
            format!(
                "; {} proofs signed in {:.2} s",
                args.warmup_proofs,
                warm_sign.as_secs_f64()
            )
        } else {
            String::new()
        },
        if warm.stats.ran_out {
            ", until its proofs ran out"
        } else {
            ""
        },
    );
    if warm.stats.errors > 0 {
        return Err(format!("{} transport errors in the warm-up", warm.stats.errors));
    }

    let pool = if !dpop {
        0
    } else if args.proofs > 0 {
        args.proofs
    } else {
        (warm_rate * (args.settle + args.duration) * 2.0).ceil() as usize + 4 * args.connections
    };
    let (proofs, sign_time) = sign(pool)?;
    if dpop {
        eprintln!(
            "bench_dpop: {pool} {} proofs signed in {:.2} s ({:.1} µs each on {} threads)",
            maker.as_ref().map_or("", |m| m.key.alg()),
            sign_time.as_secs_f64(),
            sign_time.as_secs_f64() * 1e6 * args.threads as f64 / pool.max(1) as f64,
            args.threads
        );
    }

    let (res, cpu) = stage(
        addr,
        new_job(proofs)?,
        args.connections,
        Duration::from_secs_f64(args.settle),
        Duration::from_secs_f64(args.duration),
        args.server_pid,
    )
    .await?;
    let (gen_cpu, server_cpu, other_cpu) = cpu
        .as_ref()
        .map_or(("?".into(), "?".into(), "?".into()), |(a, b)| cpu_shares(a, b));
    let mut st = res.stats;
    st.latencies_us.sort_unstable();
    let secs = args.duration;
    let requests = st.ok + st.non200;
    let rps = requests as f64 / secs;
    let (p50, p99) = (
        percentile(&st.latencies_us, 0.50),
        percentile(&st.latencies_us, 0.99),
    );
    println!(
        "{scheme}: {requests} requests in {secs:.1} s = {rps:.0}/s on {} connections; latency p50 {p50:.3} ms, p99 {p99:.3} ms, max {:.3} ms",
        args.connections,
        percentile(&st.latencies_us, 1.0)
    );
    println!(
        "non-200: {}{}; transport errors: {}; CPU during the window (% of all cores): generator {gen_cpu}, server {server_cpu}, other {other_cpu}",
        st.non200,
        st.first_non200
            .map_or(String::new(), |s| format!(" (first: {s})")),
        st.errors
    );
    println!(
        "RESULT mode={} rps={rps:.0} requests={requests} non200={} errors={} p50_ms={p50:.3} p99_ms={p99:.3} secs={secs} gen_cpu={gen_cpu} server_cpu={server_cpu} other_cpu={other_cpu} proofs={pool} sign_secs={:.2}",
        if dpop { "dpop" } else { "bearer" },
        st.non200,
        st.errors,
        sign_time.as_secs_f64()
    );
    if st.ran_out {
        return Err(format!(
            "the {pool} proofs ran out before the end (give --proofs larger than the run's requests)"
        ));
    }
    if st.non200 > 0 || st.errors > 0 {
        return Err(format!(
            "{} non-200 answers, {} transport errors",
            st.non200, st.errors
        ));
    }
    Ok(())
}
