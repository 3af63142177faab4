//! Crash durability (issue 14, item 4): a few concurrent clients write as
//! fast as the service answers — logins with refresh tokens, refresh
//! rotations at `/oauth2/token`, logouts — until the process is killed with
//! SIGKILL at a random moment. Before the restart the database the kill left
//! passes `PRAGMA integrity_check` and `foreign_key_check`, and no write is
//! half there (a session without its refresh family, a rotation without its
//! event, a revocation without its event). After the restart on the same
//! file every ACKNOWLEDGED write is there:
//!
//! - an acknowledged create verifies and is listed for its subject;
//! - an acknowledged revocation stays revoked: verify says
//!   `session_revoked`, the refresh token is refused, in this cycle and
//!   after every later restart;
//! - after an acknowledged rotation the newest refresh token rotates again,
//!   and the one it replaced is refused as reuse (strict rotation, grace 0,
//!   so a replay has one possible answer), which ends the session.
//!
//! A write in flight when the process died may land or not, but whole: a
//! rotation in flight either left the token current (it rotates) or
//! consumed it (it is refused as reuse and the session ends); a revocation
//! in flight leaves the session live or revoked; a login in flight leaves
//! zero or one session for its subject, with its refresh family (they are
//! one store write: `RefreshStore::create_with_refresh_family`; when they
//! were two, a kill between them left sessions without a family, which
//! this loop found).
//!
//! `CRASH_CYCLES` sets the number of kill/restart cycles (default 3, a few
//! seconds each); `CRASH_SEED` replays a run (the seed is printed).
//! `./scripts/crash-test` runs this test with `CRASH_CYCLES=20`.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Opts, Resp, TestServer};

/// Concurrent writers.
const CLIENTS: usize = 4;
const DEFAULT_CYCLES: usize = 3;
/// The kill lands this long after the load starts, at least…
const KILL_AFTER_MIN_MS: u64 = 100;
/// …plus up to this much more.
const KILL_AFTER_SPREAD_MS: u64 = 700;
/// A client that somehow outlives the kill stops by itself.
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A session whose create was acknowledged, and what was acknowledged since.
#[derive(Debug, Clone)]
struct Tracked {
    subject: String,
    handle: String,
    token: String,
    /// The refresh token from the create, then one per acknowledged rotation.
    rts: Vec<String>,
    /// The revocation was acknowledged (204).
    revoked: bool,
}

/// The write a client had sent and not seen answered when the server died.
#[derive(Debug, Clone)]
enum InFlight {
    Create { subject: String },
    Rotate { session: usize },
    Revoke { session: usize },
}

#[derive(Debug, Default)]
struct ClientRun {
    sessions: Vec<Tracked>,
    in_flight: Option<InFlight>,
    /// Answers a live server should never give.
    violations: Vec<String>,
}

#[derive(Debug, Default)]
struct Totals {
    creates: u64,
    rotations: u64,
    revokes: u64,
    in_flight: u64,
    in_flight_landed: u64,
}

enum Sent {
    Answer(u16, Value),
    /// No complete answer: the server died first.
    Lost,
}

async fn send(rb: reqwest::RequestBuilder) -> Sent {
    let Ok(r) = rb.send().await else {
        return Sent::Lost;
    };
    let status = r.status().as_u16();
    let Ok(body) = r.bytes().await else {
        return Sent::Lost;
    };
    Sent::Answer(status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn refresh_form(rt: &str) -> String {
    // Refresh tokens are base64url: nothing to percent-encode.
    format!("grant_type=refresh_token&client_id=default&refresh_token={rt}")
}

/// One writer: logins (40 %), rotations (40 %) and logouts (20 %) of its own
/// sessions, one at a time, until a request goes unanswered.
async fn client(
    http: reqwest::Client,
    base: String,
    key: String,
    cycle: usize,
    id: usize,
    seed: u64,
) -> ClientRun {
    let mut rng = Rng::new(seed);
    let mut run = ClientRun::default();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < CLIENT_LIMIT {
        let live: Vec<usize> = (0..run.sessions.len())
            .filter(|&i| !run.sessions[i].revoked)
            .collect();
        let r = rng.below(10);
        if live.is_empty() || r < 4 {
            n += 1;
            let subject = format!("crash-{cycle}-{id}-{n}");
            let rb = http
                .post(format!("{base}/v1/sessions"))
                .bearer_auth(&key)
                .json(&json!({"subject": subject, "tokens": {}}));
            match send(rb).await {
                Sent::Lost => {
                    run.in_flight = Some(InFlight::Create { subject });
                    return run;
                }
                Sent::Answer(201, v) => {
                    let (Some(token), Some(handle), Some(rt)) = (
                        v["session_token"].as_str(),
                        v["session"]["handle"].as_str(),
                        v["refresh_token"].as_str(),
                    ) else {
                        run.violations
                            .push(format!("{subject}: a 201 without the tokens: {v}"));
                        return run;
                    };
                    run.sessions.push(Tracked {
                        subject,
                        handle: handle.to_owned(),
                        token: token.to_owned(),
                        rts: vec![rt.to_owned()],
                        revoked: false,
                    });
                }
                Sent::Answer(s, v) => {
                    run.violations.push(format!("{subject}: create answered {s} {v}"));
                    return run;
                }
            }
        } else if r < 8 {
            let i = live[rng.below(live.len() as u64) as usize];
            let rt = run.sessions[i].rts.last().cloned().unwrap_or_default();
            let rb = http
                .post(format!("{base}/oauth2/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(refresh_form(&rt));
            match send(rb).await {
                Sent::Lost => {
                    run.in_flight = Some(InFlight::Rotate { session: i });
                    return run;
                }
                Sent::Answer(200, v) => {
                    let Some(next) = v["refresh_token"].as_str() else {
                        run.violations
                            .push(format!("a 200 rotation without refresh_token: {v}"));
                        return run;
                    };
                    run.sessions[i].rts.push(next.to_owned());
                }
                Sent::Answer(s, v) => {
                    let subject = &run.sessions[i].subject;
                    run.violations
                        .push(format!("{subject}: rotation answered {s} {v}"));
                    return run;
                }
            }
        } else {
            let i = live[rng.below(live.len() as u64) as usize];
            let rb = http
                .post(format!("{base}/v1/sessions/revoke"))
                .bearer_auth(&key)
                .json(&json!({"session_token": run.sessions[i].token}));
            match send(rb).await {
                Sent::Lost => {
                    run.in_flight = Some(InFlight::Revoke { session: i });
                    return run;
                }
                Sent::Answer(204, _) => run.sessions[i].revoked = true,
                Sent::Answer(s, v) => {
                    let subject = &run.sessions[i].subject;
                    run.violations.push(format!("{subject}: revoke answered {s} {v}"));
                    return run;
                }
            }
        }
    }
    run.violations.push(format!(
        "client {id} of cycle {cycle} was still writing after {CLIENT_LIMIT:?}"
    ));
    run
}

/// The database as the kill left it: intact, and no write half there.
/// Returns the violations.
fn check_db(db: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let c = match rusqlite::Connection::open(db) {
        Ok(c) => c,
        Err(e) => return vec![format!("cannot open {}: {e}", db.display())],
    };
    let rows = |sql: &str| -> Result<Vec<String>, rusqlite::Error> {
        let mut st = c.prepare(sql)?;
        let v = st
            .query_map([], |r| {
                let n = r.as_ref().column_count();
                let mut cols = Vec::with_capacity(n);
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    cols.push(format!("{v:?}"));
                }
                Ok(cols.join(" "))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    };
    let checks: [(&str, &str); 6] = [
        ("PRAGMA integrity_check", "integrity_check"),
        ("PRAGMA foreign_key_check", "foreign_key_check"),
        (
            "SELECT handle FROM sessions s WHERE subject LIKE 'crash-%' AND \
             (SELECT count(*) FROM refresh_families f WHERE f.handle = s.handle) != 1",
            "a login (every one asks for a refresh token) without exactly one refresh family",
        ),
        (
            "SELECT handle FROM sessions s WHERE subject LIKE 'crash-%' AND \
             (SELECT count(*) FROM events e WHERE e.handle = s.handle AND e.kind = 'created') != 1",
            "a login without exactly one created event",
        ),
        (
            "SELECT f.handle, f.generation FROM refresh_families f WHERE f.generation != \
             (SELECT count(*) FROM events e WHERE e.handle = f.handle AND e.kind = 'refreshed')",
            "a family whose generation is not its number of refreshed events",
        ),
        (
            "SELECT handle FROM sessions s WHERE subject LIKE 'crash-%' AND (revoked_at IS NOT NULL) != \
             EXISTS (SELECT 1 FROM events e WHERE e.handle = s.handle AND e.kind = 'revoked')",
            "a revocation without its event, or an event without the revocation",
        ),
    ];
    for (sql, what) in checks {
        match rows(sql) {
            Ok(r) if sql.starts_with("PRAGMA integrity_check") => {
                if r != [r#"Text("ok")"#] {
                    out.push(format!("integrity_check: {r:?}"));
                }
            }
            Ok(r) if r.is_empty() => {}
            Ok(r) => out.push(format!("{what}: {r:?}")),
            Err(e) => out.push(format!("{what}: query failed: {e}")),
        }
    }
    out
}

async fn verify(srv: &TestServer, token: &str) -> Resp {
    srv.send_any(
        srv.req(Method::POST, "/v1/sessions/verify")
            .json(&json!({"session_token": token})),
    )
    .await
}

async fn rotate(srv: &TestServer, rt: &str) -> Resp {
    srv.send_any(
        srv.http
            .post(srv.url("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(refresh_form(rt)),
    )
    .await
}

fn code(r: &Resp) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    v["code"]
        .as_str()
        .or_else(|| v["error"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn is_revoked(r: &Resp) -> bool {
    r.status == 401 && code(r) == "session_revoked"
}

fn is_refused_grant(r: &Resp) -> bool {
    r.status == 400 && code(r) == "invalid_grant"
}

/// The checks after a restart of one client's sessions; pushes every
/// session it ended (all of them) to `ended`.
async fn check_client(
    srv: &TestServer,
    run: &ClientRun,
    ended: &mut Vec<(String, String)>,
    totals: &mut Totals,
    bad: &mut Vec<String>,
) {
    bad.extend(run.violations.iter().cloned());
    for (i, s) in run.sessions.iter().enumerate() {
        totals.creates += 1;
        totals.rotations += s.rts.len() as u64 - 1;
        totals.revokes += u64::from(s.revoked);
        let who = &s.subject;
        let last = s.rts.last().expect("a refresh token from the create");
        let in_flight = run.in_flight.as_ref().filter(|f| match f {
            InFlight::Rotate { session } | InFlight::Revoke { session } => *session == i,
            InFlight::Create { .. } => false,
        });
        ended.push((s.token.clone(), who.clone()));

        let v = verify(srv, &s.token).await;
        if s.revoked {
            if !is_revoked(&v) {
                bad.push(format!(
                    "{who}: ACKED REVOKE LOST: verify answered {} {}",
                    v.status,
                    v.text()
                ));
            }
            let r = rotate(srv, last).await;
            if !is_refused_grant(&r) {
                bad.push(format!(
                    "{who}: revoked, yet its refresh token answered {} {}",
                    r.status,
                    r.text()
                ));
            }
            continue;
        }
        if let Some(InFlight::Revoke { .. }) = in_flight {
            totals.in_flight += 1;
            if is_revoked(&v) {
                totals.in_flight_landed += 1;
                let r = rotate(srv, last).await;
                if !is_refused_grant(&r) {
                    bad.push(format!(
                        "{who}: HALF REVOKE: revoked, yet its refresh token answered {} {}",
                        r.status,
                        r.text()
                    ));
                }
                continue;
            }
        }
        if v.status != 200 || v.json()["session"]["handle"] != s.handle.as_str() {
            bad.push(format!(
                "{who}: ACKED CREATE LOST: verify answered {} {}",
                v.status,
                v.text()
            ));
            continue;
        }
        let listed = srv
            .send_any(srv.req(Method::GET, &format!("/v1/subjects/{who}/sessions")))
            .await;
        if listed.status != 200 || !listed.text().contains(&s.handle) {
            bad.push(format!("{who}: not listed: {} {}", listed.status, listed.text()));
        }

        let r = rotate(srv, last).await;
        let newest = if let Some(InFlight::Rotate { .. }) = in_flight {
            totals.in_flight += 1;
            if is_refused_grant(&r) {
                // The rotation landed and consumed `last`: this replay is
                // reuse, which ends the session, all of it.
                totals.in_flight_landed += 1;
                let v = verify(srv, &s.token).await;
                if !is_revoked(&v) {
                    bad.push(format!(
                        "{who}: HALF ROTATION: the token is consumed, yet the replay left the session {} {}",
                        v.status,
                        v.text()
                    ));
                }
                continue;
            }
            r
        } else {
            r
        };
        if newest.status != 200 {
            bad.push(format!(
                "{who}: ACKED ROTATION LOST: the newest refresh token answered {} {}",
                newest.status,
                newest.text()
            ));
            continue;
        }
        let successor = newest.json()["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // The token the last acknowledged rotation replaced (or, with none,
        // the one just rotated): a replay is reuse.
        let old = if s.rts.len() >= 2 {
            &s.rts[s.rts.len() - 2]
        } else {
            last
        };
        let r = rotate(srv, old).await;
        if !is_refused_grant(&r) {
            bad.push(format!(
                "{who}: a replaced refresh token was not refused: {} {}",
                r.status,
                r.text()
            ));
        }
        let v = verify(srv, &s.token).await;
        if !is_revoked(&v) {
            bad.push(format!(
                "{who}: reuse did not end the session: {} {}",
                v.status,
                v.text()
            ));
        }
        let r = rotate(srv, &successor).await;
        if !is_refused_grant(&r) {
            bad.push(format!(
                "{who}: after reuse the successor still answered {} {}",
                r.status,
                r.text()
            ));
        }
    }
    if let Some(InFlight::Create { subject }) = &run.in_flight {
        totals.in_flight += 1;
        let listed = srv
            .send_any(srv.req(Method::GET, &format!("/v1/subjects/{subject}/sessions")))
            .await;
        match listed.json()["sessions"].as_array().map(Vec::len) {
            Some(0) => {}
            Some(1) => totals.in_flight_landed += 1,
            _ => bad.push(format!(
                "{subject}: an unanswered login left {} {}",
                listed.status,
                listed.text()
            )),
        }
    }
}

/// Runs the loop; returns a summary line, panicking on any violation.
async fn crash_loop(cycles: usize, seed: u64) -> String {
    // Strict rotation: a replayed refresh token has one possible answer.
    // Hundreds of token requests a second from 127.0.0.1: over the token
    // endpoint's per-address abuse limit, which is not under test here.
    let mut srv = TestServer::start(
        Opts::default()
            .env("TESSERA_REFRESH_REUSE_GRACE_SECS", "0")
            .env("TESSERA_RATE_LIMITS_ENABLED", "false"),
    )
    .await;
    let url = srv.store_url();
    let db = Path::new(url.strip_prefix("sqlite://").expect("a SQLite store")).to_path_buf();
    let mut rng = Rng::new(seed);
    let mut ended: Vec<(String, String)> = Vec::new();
    let mut totals = Totals::default();
    let mut bad: Vec<String> = Vec::new();
    let mut tokens = Vec::new();
    let started = Instant::now();
    for cycle in 1..=cycles {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|id| {
                tokio::spawn(client(
                    srv.http.clone(),
                    srv.base.clone(),
                    srv.api_key.clone(),
                    cycle,
                    id,
                    rng.next(),
                ))
            })
            .collect();
        let after = KILL_AFTER_MIN_MS + rng.below(KILL_AFTER_SPREAD_MS);
        tokio::time::sleep(Duration::from_millis(after)).await;
        srv.kill9().await;
        let mut runs = Vec::with_capacity(CLIENTS);
        for t in tasks {
            runs.push(t.await.expect("a client panicked"));
        }
        for p in check_db(&db) {
            bad.push(format!("cycle {cycle}, database after the kill: {p}"));
        }
        srv.restart().await;

        // Everything ended in earlier cycles stays ended.
        let before = ended.len();
        for (token, who) in &ended {
            let v = verify(&srv, token).await;
            if !is_revoked(&v) {
                bad.push(format!(
                    "cycle {cycle}: {who}, ended before, is back: {} {}",
                    v.status,
                    v.text()
                ));
            }
        }
        let t0 = (totals.creates, totals.rotations, totals.revokes, totals.in_flight);
        for run in &runs {
            check_client(&srv, run, &mut ended, &mut totals, &mut bad).await;
            for s in &run.sessions {
                tokens.push(s.token.clone());
                tokens.extend(s.rts.iter().cloned());
            }
        }
        eprintln!(
            "crash cycle {cycle}/{cycles}: SIGKILL after {after} ms; acknowledged {} creates, {} rotations, \
             {} revokes; {} in flight; {before} sessions of earlier cycles still ended",
            totals.creates - t0.0,
            totals.rotations - t0.1,
            totals.revokes - t0.2,
            totals.in_flight - t0.3,
        );
    }
    for t in &tokens {
        srv.note_secrets(t);
    }
    let summary = format!(
        "CRASH SUMMARY cycles={cycles} seed={seed} acked_creates={} acked_rotations={} acked_revokes={} \
         acked_checked={} in_flight={} in_flight_landed={} violations={} secs={:.1}",
        totals.creates,
        totals.rotations,
        totals.revokes,
        totals.creates + totals.rotations + totals.revokes,
        totals.in_flight,
        totals.in_flight_landed,
        bad.len(),
        started.elapsed().as_secs_f64(),
    );
    eprintln!("{summary}");
    assert!(
        bad.is_empty(),
        "{} violation(s) (seed {seed}):\n{}\nlog:\n{}",
        bad.len(),
        bad.join("\n"),
        srv.logs()
    );
    assert!(
        totals.creates + totals.rotations + totals.revokes > 0,
        "nothing was acknowledged: the loop checked nothing"
    );
    srv.finish().await;
    summary
}

/// Issue 14 item 4: every acknowledged create, rotation and revocation
/// survives `kill -9` at random points, the database stays intact, and
/// revoked stays revoked (a few cycles here; `./scripts/crash-test` runs 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kill9_loop_keeps_every_acknowledged_write() {
    let cycles = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(DEFAULT_CYCLES);
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("crash loop: {cycles} cycles, {CLIENTS} clients, CRASH_SEED={seed}");
    crash_loop(cycles, seed).await;
}
