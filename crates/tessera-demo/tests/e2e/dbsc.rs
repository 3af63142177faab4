//! Device Bound Session Credentials in real Chromium, against the demo over
//! HTTPS (issue 13). Chromium acts on DBSC only over a certificate it counts
//! as valid, so this scenario runs its own demo (`--tls-self-signed --dbsc`)
//! and trusts that certificate through its SPKI hash; see
//! shared/reference/dbsc-chromium.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::harness::{COOKIE, Demo, Harness, PASSWORD, Profile, header, http_client};

/// The bound cookie's name (the layer's default).
const BOUND: &str = "__Host-tessera-dbsc";
/// Short enough that the scenario sees several refreshes.
const TTL_SECS: u64 = 5;
const REGISTERED: &str = "device-bound session registered";
const REFRESHED: &str = "device-bound session refreshed with a valid proof";

async fn wait_log(demo: &Demo, needle: &str, at_least: usize, what: &str) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = demo.log_lines(needle);
        if lines.len() >= at_least {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: the demo logged {} `{needle}` line(s), expected {at_least}",
                lines.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn bound_value(p: &Profile) -> Result<Option<String>> {
    Ok(p.client
        .get_all_cookies()
        .await?
        .into_iter()
        .find(|c| c.name() == BOUND)
        .map(|c| c.value().to_string()))
}

/// Loads `/account` and checks it shows the signed-in view; the time the
/// navigation took, as the user waits for it.
async fn timed_account(p: &Profile, user: &str) -> Result<Duration> {
    let t = Instant::now();
    p.goto("/account").await?;
    let took = t.elapsed();
    p.wait_path("/account").await?;
    let who = p.text_of("#whoami").await?;
    ensure!(who == user, "#whoami is {who:?}, expected {user:?}");
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// DB-01..DB-10 end to end: registration after sign-up, refresh with a proof
/// while the user keeps browsing, a cookie copy without the key refused once
/// the bound cookie expired, logout ends the DBSC session.
pub async fn db_e2e_register_refresh_replay_logout(h: Arc<Harness>) -> Result<()> {
    let ttl = TTL_SECS.to_string();
    let demo = Demo::start_with(
        &["--tls-self-signed", "--dbsc", "--dbsc-cookie-ttl-secs", &ttl],
        "e2e-demo-dbsc.log",
    )
    .await?;
    let flags = vec![
        format!("--ignore-certificate-errors-spki-list={}", demo.spki()?),
        "--enable-features=DeviceBoundSessions:RequireOriginTrialTokens/false/RefreshQuota/false,\
         EnableBoundSessionCredentialsSoftwareKeysForManualTesting"
            .to_string(),
    ];
    let a = h.driver.profile_with("dbsc", &demo, &flags).await?;
    let user = "dbsc-alice";
    a.signup(user, PASSWORD).await?;

    // Registration: the server verified the browser's proof.
    let reg = wait_log(&demo, REGISTERED, 1, "after sign-up").await?;
    let handle = reg[0]
        .split("session=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .context("no session= in the registration log line")?
        .to_string();
    let first_bound = bound_value(&a)
        .await?
        .context("the browser holds no bound cookie after registration")?;
    let session = a.session_value().await?;
    let copy = format!("{COOKIE}={session}; {BOUND}={first_bound}");
    // While the bound cookie is fresh the copy works (DBSC shortens a
    // stolen copy's life to the bound cookie's; it does not end it at once),
    // which also shows the refusal below is the expiry, not a bad copy.
    let early = http_client()
        .get(demo.url("/account"))
        .header("cookie", &copy)
        .send()
        .await?;
    ensure!(
        early.status().as_u16() == 200,
        "the cookie copy before expiry got {}, expected 200",
        early.status()
    );

    // The bound cookie expires; the next navigation is held, refreshed with a
    // proof, and still shows the signed-in view.
    let before = demo.log_lines(REFRESHED).len();
    tokio::time::sleep(Duration::from_secs(TTL_SECS + 1)).await;
    timed_account(&a, user).await?;
    wait_log(
        &demo,
        REFRESHED,
        before + 1,
        "navigation after the bound cookie expired",
    )
    .await?;
    let second_bound = bound_value(&a).await?.context("no bound cookie after refresh")?;
    ensure!(
        second_bound != first_bound,
        "the refresh did not replace the bound cookie"
    );

    // A copy of the cookies, no key: once the copied bound cookie has
    // expired, it is signed out.
    let replay = http_client()
        .get(demo.url("/account"))
        .header("cookie", &copy)
        .send()
        .await?;
    let loc = header(&replay, "location").unwrap_or_default();
    ensure!(
        replay.status().as_u16() == 303 && loc.ends_with("/login"),
        "a replayed copy with an expired bound cookie got {} (Location {loc:?}), expected 303 to /login",
        replay.status()
    );

    // The refresh round trip as the user sees it: a navigation that needs a
    // refresh against one that does not.
    let (mut fresh, mut stale) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(TTL_SECS + 1)).await;
        let n = demo.log_lines(REFRESHED).len();
        stale.push(timed_account(&a, user).await?);
        wait_log(&demo, REFRESHED, n + 1, "timed stale navigation").await?;
        fresh.push(timed_account(&a, user).await?);
    }
    let (f, s) = (median(fresh.clone()), median(stale.clone()));
    eprintln!(
        "e2e: DBSC navigation /account: bound cookie fresh median {:.1} ms {fresh:?}, \
         expired (refresh) median {:.1} ms {stale:?}, extra {:.1} ms",
        f.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e3,
        (s.as_secs_f64() - f.as_secs_f64()) * 1e3
    );

    // Logout ends the DBSC session: the server tells the browser to stop.
    let logout = a.submit_button("#logout").await?;
    a.click_and_wait(&logout, "#logout").await?;
    a.wait_path("/login").await?;
    let r = http_client()
        .post(demo.url("/auth/dbsc/refresh"))
        .header("sec-secure-session-id", &handle)
        .send()
        .await?;
    let status = r.status().as_u16();
    let body = r.text().await?;
    ensure!(
        status == 200 && body.contains("\"continue\":false"),
        "refresh after logout: {status} {body:?}, expected 200 {{\"continue\": false}}"
    );
    a.close().await;
    Ok(())
}
