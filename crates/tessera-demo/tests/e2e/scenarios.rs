//! The user journeys. Every scenario signs up its own user, so they do not
//! depend on each other's state, and closes its browser profiles at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use fantoccini::cookies::Cookie;
use serde_json::json;

use crate::harness::{
    COOKIE, Harness, PASSWORD, Profile, SessionRow, assert_cookie_dead, assert_cookie_live, get_with_cookie,
    header, headers_all, http_client, snippet,
};

/// A well-formed but never-issued value (43 base64url characters, like a real
/// one), planted the way a session-fixation attacker would.
const PLANTED: &str = "fixatedFIXATEDfixatedFIXATEDfixatedFIXATED0";

/// Closes the profiles whatever the outcome, then passes the outcome on.
async fn finish(profiles: Vec<Profile>, outcome: Result<()>) -> Result<()> {
    for p in profiles {
        p.close().await;
    }
    outcome
}

/// The checks on the session cookie as the browser stores it (SC-05..08).
fn check_cookie_attributes(c: &Cookie<'_>, when: &str) -> Result<()> {
    ensure!(
        c.http_only() == Some(true),
        "{when}: {COOKIE} must be HttpOnly, WebDriver reports http_only={:?}",
        c.http_only()
    );
    ensure!(
        c.secure() == Some(true),
        "{when}: {COOKIE} must be Secure, WebDriver reports secure={:?}",
        c.secure()
    );
    ensure!(
        c.same_site() == Some(cookie::SameSite::Lax),
        "{when}: {COOKIE} must be SameSite=Lax, WebDriver reports {:?}",
        c.same_site()
    );
    ensure!(
        c.path() == Some("/"),
        "{when}: {COOKIE} must have Path=/, WebDriver reports {:?}",
        c.path()
    );
    // 128 bits at least (SC-01): 22 base64url characters, or 32 hex ones.
    ensure!(
        c.value().len() >= 22,
        "{when}: the session value {:?} is too short to carry 128 random bits",
        c.value()
    );
    Ok(())
}

/// The one row marked `.this-device`.
fn this_device(rows: &[SessionRow], who: &str) -> Result<SessionRow> {
    let marked: Vec<_> = rows.iter().filter(|r| r.this_device).collect();
    ensure!(
        marked.len() == 1,
        "{who}: exactly one row of #sessions should carry .this-device, {} do: {rows:?}",
        marked.len()
    );
    ensure!(
        !marked[0].handle.is_empty(),
        "{who}: the current row has no data-handle: {rows:?}"
    );
    Ok(marked[0].clone())
}

/// Waits until the browser shows a page of the demo's origin again (after an
/// auto-submitting page elsewhere posted to it).
async fn wait_back_on_demo(p: &Profile, h: &Harness) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = p.url().await?;
        let on_demo = url.host_str() == Some("127.0.0.1") && url.port() == Some(h.demo.port);
        let ready = p
            .client
            .execute("return document.readyState", vec![])
            .await
            .is_ok_and(|v| v == json!("complete"));
        if on_demo && ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("[{}] the forged form never reached the demo; on {url}", p.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The URL of the step-up page must carry `next=/account/password`.
async fn check_reauth_next(p: &Profile) -> Result<()> {
    let url = p.url().await?;
    let next = url
        .query_pairs()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned());
    ensure!(
        next.as_deref() == Some("/account/password"),
        "[{}] /account/password should send to /reauth?next=/account/password, got {url}",
        p.name
    );
    Ok(())
}

/// Opens `/account/password`, which should send a session without a recent
/// step-up to `/reauth?next=/account/password`. Returns whether it did; a demo
/// may count a login of a moment ago as recent authentication, so a direct
/// answer is tolerated (and reported), not failed.
async fn open_password_page(p: &Profile) -> Result<bool> {
    p.goto("/account/password").await?;
    match p.path().await?.as_str() {
        "/reauth" => {
            check_reauth_next(p).await?;
            Ok(true)
        }
        "/account/password" => {
            eprintln!(
                "e2e: note: [{}] /account/password opened without a step-up right after login",
                p.name
            );
            Ok(false)
        }
        _ => bail!(
            "[{}] /account/password should redirect to /reauth?next=/account/password, it showed {} ({:?})",
            p.name,
            p.url().await?,
            snippet(&p.body_text().await)
        ),
    }
}

/// Steps up on `/reauth` (reached through `/account/password`, or directly if
/// that page needed none) and ends on `/account/password`.
async fn step_up_to_password_page(p: &Profile, password: &str) -> Result<()> {
    if !open_password_page(p).await? {
        p.goto("/reauth?next=/account/password").await?;
    }
    p.reauth(password).await?;
    p.wait_path("/account/password").await?;
    p.find("#new-password").await?;
    Ok(())
}

/// After a failed login attempt: the 401 page with `#error`, still on /login,
/// and no session cookie handed out.
async fn expect_login_refused(p: &Profile, what: &str) -> Result<()> {
    let status = p.status().await?;
    ensure!(
        status == 401,
        "[{}] {what}: POST /login should answer 401, answered {status}",
        p.name
    );
    ensure!(
        p.exists("#error").await?,
        "[{}] {what}: the 401 page has no #error ({:?})",
        p.name,
        snippet(&p.body_text().await)
    );
    ensure!(
        !p.exists("#whoami").await?,
        "[{}] {what}: the refused login shows an account page",
        p.name
    );
    Ok(())
}

/// Lands on `/account`; asserts that the browser is still logged in as `user`.
async fn expect_logged_in(p: &Profile, user: &str) -> Result<()> {
    p.goto("/account").await?;
    ensure!(
        p.path().await? == "/account",
        "[{}] should still be logged in as {user}, but /account sent to {}",
        p.name,
        p.url().await?
    );
    let who = p.text_of("#whoami").await?;
    ensure!(who == user, "[{}] #whoami is {who:?}, not {user:?}", p.name);
    Ok(())
}

/// Navigating to `/account` lands on the login form.
async fn expect_logged_out(p: &Profile, what: &str) -> Result<()> {
    p.goto("/account").await?;
    let path = p.path().await?;
    ensure!(
        path == "/login",
        "[{}] {what}: /account should redirect to /login, it showed {} ({:?})",
        p.name,
        p.url().await?,
        snippet(&p.body_text().await)
    );
    ensure!(
        p.exists("#login").await?,
        "[{}] {what}: no login form on /login",
        p.name
    );
    Ok(())
}

// ============================================================== SC-07 (+SC-05/06/08)

/// Signing up sets `__Host-tessera` HttpOnly, Secure, SameSite=Lax, Path=/;
/// page scripts cannot read it and no page shows it.
pub async fn sc_07_cookie_httponly_secure_lax(h: Arc<Harness>) -> Result<()> {
    let a = h.profile("sc07").await?;
    let r = async {
        a.goto("/").await?;
        a.wait_path("/login").await?;
        ensure!(
            a.exists("#login").await?,
            "GET / without a session should show the login form"
        );
        a.screenshot("login.png").await?;

        a.signup("sc07-alice", PASSWORD).await?;
        let c = a
            .session_cookie()
            .await?
            .ok_or_else(|| anyhow!("signing up set no {COOKIE} cookie"))?;
        check_cookie_attributes(&c, "after signup")?;
        let value = c.value().to_string();

        let js = a.client.execute("return document.cookie", vec![]).await?;
        let js = js.as_str().unwrap_or_default().to_string();
        ensure!(
            !js.contains(&value) && !js.contains(COOKIE),
            "document.cookie exposes the session cookie: {js:?}"
        );
        ensure!(js.is_empty(), "document.cookie should be empty, is {js:?}");
        let source = a.client.source().await?;
        ensure!(
            !source.contains(&value),
            "the account page's HTML contains the session token"
        );

        // The server takes the cookie back, and / now leads to the account.
        assert_cookie_live(&h.demo, &value, "the cookie set at signup").await?;
        a.goto("/").await?;
        a.wait_path("/account").await?;
        Ok(())
    }
    .await;
    finish(vec![a], r).await
}

// ============================================================== FX-01, FX-04, SC-03

/// Logging in issues a new value; a value planted before login (session
/// fixation) is neither kept nor accepted.
pub async fn fx_01_fx_04_sc_03_login_rotates_and_planted_value_is_refused(h: Arc<Harness>) -> Result<()> {
    let a = h.profile("fx01").await?;
    let r = async {
        let user = "fx01-bob";
        a.signup(user, PASSWORD).await?;
        let signup_value = a.session_value().await?;
        let logout = a.submit_button("#logout").await?;
        a.click_and_wait(&logout, "#logout").await?;
        a.wait_path("/login").await?;

        // FX-01: the pre-login value S0, the app's own if it sets one, else one
        // planted by an "attacker" (FX-04 / SC-03).
        let pre = a.session_cookie().await?;
        let (s0, planted) = match pre {
            Some(c) => {
                eprintln!("e2e: note: the demo set a pre-login cookie; FX-01 uses it as S0");
                (c.value().to_string(), false)
            }
            None => {
                // chromedriver refuses a cookie without a domain here ("invalid
                // 'domain'"); naming the host still makes a host-only cookie.
                let c = Cookie::build((COOKIE, PLANTED))
                    .domain("127.0.0.1")
                    .path("/")
                    .secure(true)
                    .same_site(cookie::SameSite::Lax)
                    .build();
                a.client
                    .add_cookie(c)
                    .await
                    .context("plant a __Host- cookie through WebDriver")?;
                let got = a
                    .session_value()
                    .await
                    .context("the planted cookie did not stick")?;
                ensure!(got == PLANTED, "planted {PLANTED:?}, the browser holds {got:?}");
                (PLANTED.to_string(), true)
            }
        };
        // The planted value does not authenticate on its own (SC-03).
        assert_cookie_dead(&h.demo, &s0, "the pre-login value").await?;

        a.goto("/login").await?;
        a.submit_login(user, PASSWORD).await?;
        a.wait_path("/account").await?;
        let who = a.text_of("#whoami").await?;
        ensure!(who == user, "#whoami is {who:?} after logging in");
        let c = a
            .session_cookie()
            .await?
            .ok_or_else(|| anyhow!("logging in left no {COOKIE} cookie"))?;
        check_cookie_attributes(&c, "after login")?;
        let s1 = c.value().to_string();
        ensure!(
            s1 != s0,
            "logging in kept the pre-login value {s0:?} (planted: {planted}): session fixation"
        );
        ensure!(
            s1 != signup_value,
            "the second login reused the first session's value"
        );
        assert_cookie_dead(&h.demo, &s0, "the pre-login value, after login").await?;
        assert_cookie_dead(&h.demo, &signup_value, "the value logged out before").await?;
        assert_cookie_live(&h.demo, &s1, "the value issued at login").await?;
        Ok(())
    }
    .await;
    finish(vec![a], r).await
}

// ============================================================== FX-02

/// Stepping up on `/reauth` issues a new value and the old one stops working;
/// a wrong password does not step up.
pub async fn fx_02_step_up_rotates_and_old_value_dies(h: Arc<Harness>) -> Result<()> {
    let a = h.profile("fx02").await?;
    let r = async {
        a.signup("fx02-carol", PASSWORD).await?;
        let s1 = a.session_value().await?;

        if !open_password_page(&a).await? {
            a.goto("/reauth?next=/account/password").await?;
        }

        // A wrong password neither steps up nor rotates.
        a.fill("#password", "not-the-password").await?;
        a.click("#reauth").await?;
        ensure!(
            a.path().await? == "/reauth",
            "a wrong step-up password left /reauth for {}",
            a.url().await?
        );
        ensure!(
            a.session_value().await? == s1,
            "a failed step-up changed the session cookie"
        );
        assert_cookie_live(&h.demo, &s1, "the value after a failed step-up").await?;

        a.goto("/reauth?next=/account/password").await?;
        a.reauth(PASSWORD).await?;
        a.wait_path("/account/password").await?;
        a.find("#new-password").await?;
        let s2 = a.session_value().await?;
        ensure!(s2 != s1, "the step-up did not change the session cookie value");
        assert_cookie_dead(&h.demo, &s1, "the value from before the step-up").await?;
        assert_cookie_live(&h.demo, &s2, "the value issued at step-up").await?;
        // The browser goes on with the new value.
        expect_logged_in(&a, "fx02-carol").await?;
        Ok(())
    }
    .await;
    finish(vec![a], r).await
}

// ============================================================== EX-10

/// Two devices of one user: each sees both sessions with its own marked; A
/// revokes B, and B's next page is the login form.
pub async fn ex_10_two_devices_list_and_revoke_other(h: Arc<Harness>) -> Result<()> {
    let a = h.profile("ex10-A").await?;
    let b = match h.profile("ex10-B").await {
        Ok(b) => b,
        Err(e) => return finish(vec![a], Err(e)).await,
    };
    let r = async {
        let user = "ex10-heidi";
        a.signup(user, PASSWORD).await?;
        b.login(user, PASSWORD).await?;
        let (va, vb) = (a.session_value().await?, b.session_value().await?);
        ensure!(va != vb, "two logins of one user share a session value");

        a.goto("/account").await?;
        let rows_a = a.sessions().await?;
        let rows_b = b.sessions().await?;
        ensure!(rows_a.len() == 2, "A should list 2 sessions: {rows_a:?}");
        ensure!(rows_b.len() == 2, "B should list 2 sessions: {rows_b:?}");
        let mine_a = this_device(&rows_a, "A")?;
        let mine_b = this_device(&rows_b, "B")?;
        ensure!(
            mine_a.handle != mine_b.handle,
            "A and B mark the same row as theirs: {rows_a:?} / {rows_b:?}"
        );
        ensure!(
            rows_a.iter().any(|r| r.handle == mine_b.handle && !r.this_device),
            "A's list does not show B's session ({}) unmarked: {rows_a:?}",
            mine_b.handle
        );
        ensure!(
            rows_b.iter().any(|r| r.handle == mine_a.handle && !r.this_device),
            "B's list does not show A's session unmarked: {rows_b:?}"
        );
        for row in &rows_a {
            ensure!(
                row.text.contains("127.0.0.1"),
                "a session row does not show the IP 127.0.0.1: {row:?}"
            );
            ensure!(
                !row.handle.contains(&va) && !row.handle.contains(&vb),
                "a row's data-handle is the session token itself: {row:?}"
            );
        }
        let source = a.client.source().await?;
        ensure!(
            !source.contains(&va) && !source.contains(&vb),
            "the account page's HTML contains a session token"
        );
        a.screenshot("account.png").await?;

        // A revokes B's row.
        let revoke = a
            .find(&format!(
                "#sessions tr.session[data-handle=\"{}\"] .revoke",
                mine_b.handle
            ))
            .await?;
        a.click_and_wait(&revoke, "B's .revoke").await?;
        if a.path().await? == "/reauth" {
            eprintln!("e2e: note: revoking another session asked for a step-up first");
            a.reauth(PASSWORD).await?;
            a.wait_path("/account").await?;
            let revoke = a
                .find(&format!(
                    "#sessions tr.session[data-handle=\"{}\"] .revoke",
                    mine_b.handle
                ))
                .await?;
            a.click_and_wait(&revoke, "B's .revoke, after the step-up")
                .await?;
        }
        a.wait_path("/account").await?;
        let left = a.sessions().await?;
        ensure!(
            left.len() == 1 && left[0].this_device && left[0].handle == mine_a.handle,
            "after revoking B, A should list only its own session: {left:?}"
        );

        expect_logged_out(&b, "B after A revoked it").await?;
        assert_cookie_dead(&h.demo, &vb, "B's revoked value").await?;
        expect_logged_in(&a, user).await?;
        Ok(())
    }
    .await;
    finish(vec![a, b], r).await
}

// ============================================================== EX-08 (+FX-03)

/// Changing the password (after a step-up) on A ends B's session, keeps A
/// logged in under a new value, and only the new password logs in.
pub async fn ex_08_password_change_ends_other_sessions(h: Arc<Harness>) -> Result<()> {
    let a = h.profile("ex08-A").await?;
    let b = match h.profile("ex08-B").await {
        Ok(b) => b,
        Err(e) => return finish(vec![a], Err(e)).await,
    };
    let r = async {
        let user = "ex08-ivan";
        let new_password = "e2e-Brand-New-Pass-2";
        a.signup(user, PASSWORD).await?;
        let va_login = a.session_value().await?;
        b.login(user, PASSWORD).await?;
        let vb = b.session_value().await?;

        step_up_to_password_page(&a, PASSWORD).await?;
        let va_stepped = a.session_value().await?;
        ensure!(
            va_stepped != va_login,
            "the step-up did not rotate A's session value"
        );

        a.fill("#new-password", new_password).await?;
        a.click("#save-password").await?;
        a.wait_path("/account").await?;
        let va_new = a.session_value().await?;
        ensure!(
            va_new != va_stepped,
            "changing the password did not rotate A's session value"
        );
        let who = a.text_of("#whoami").await?;
        ensure!(who == user, "#whoami is {who:?} after the password change");
        let rows = a.sessions().await?;
        ensure!(
            rows.len() == 1 && rows[0].this_device,
            "after the password change A should list only itself: {rows:?}"
        );
        assert_cookie_dead(&h.demo, &va_stepped, "A's value from before the change").await?;
        assert_cookie_dead(&h.demo, &vb, "B's value").await?;
        assert_cookie_live(&h.demo, &va_new, "A's new value").await?;

        expect_logged_out(&b, "B after A changed the password").await?;
        b.submit_login(user, PASSWORD).await?;
        expect_login_refused(&b, "the old password").await?;
        b.goto("/login").await?;
        b.submit_login(user, new_password).await?;
        b.wait_path("/account").await?;
        expect_logged_in(&a, user).await?;
        Ok(())
    }
    .await;
    finish(vec![a, b], r).await
}

// ============================================================== CS-02, CS-03

/// Forms on another origin that auto-submit to the demo's revoke-others and
/// logout endpoints are refused, and no session ends.
pub async fn cs_02_cs_03_cross_origin_forms_are_refused(h: Arc<Harness>) -> Result<()> {
    let a = h.profile("cs-A").await?;
    let b = match h.profile("cs-B").await {
        Ok(b) => b,
        Err(e) => return finish(vec![a], Err(e)).await,
    };
    let r = async {
        let user = "cs-judy";
        a.signup(user, PASSWORD).await?;
        b.login(user, PASSWORD).await?;
        let (va, vb) = (a.session_value().await?, b.session_value().await?);
        a.goto("/account").await?;
        ensure!(a.sessions().await?.len() == 2, "A should list 2 sessions");

        // The real endpoints, as the demo's own forms name them.
        let revoke_others = a
            .find("#revoke-others")
            .await?
            .prop("action")
            .await?
            .ok_or_else(|| anyhow!("#revoke-others has no action"))?;
        let logout = a
            .find("#logout")
            .await?
            .prop("action")
            .await?
            .ok_or_else(|| anyhow!("#logout has no action"))?;
        let att = &h.attacker;
        att.auto_post("/revoke-others", &revoke_others);
        att.auto_post("/logout", &logout);

        // Same site, other origin (127.0.0.1:other port): SameSite=Lax lets the
        // cookie through, so only the CSRF defence stands in the way.
        for (page, endpoint) in [("/revoke-others", &revoke_others), ("/logout", &logout)] {
            a.client.goto(&att.same_site_url(page)).await?;
            wait_back_on_demo(&a, &h).await?;
            let status = a.status().await?;
            let text = a.body_text().await;
            ensure!(
                status == 403,
                "a cross-origin POST to {endpoint} from {} answered {status}, not 403 ({:?})",
                att.same_site_url(page),
                snippet(&text)
            );
            ensure!(
                text.contains("csrf_rejected") || a.client.source().await?.contains("csrf_rejected"),
                "the 403 page for a forged POST to {endpoint} does not say csrf_rejected: {:?}",
                snippet(&text)
            );
        }
        // Another site (localhost:other port): the browser withholds the Lax
        // cookie; whatever the answer, nothing may change.
        for page in ["/revoke-others", "/logout"] {
            a.client.goto(&att.cross_site_url(page)).await?;
            wait_back_on_demo(&a, &h).await?;
            let status = a.status().await?;
            ensure!(
                status == 403 || a.path().await? == "/login",
                "a cross-site POST via {} answered {status} on {}",
                att.cross_site_url(page),
                a.url().await?
            );
        }

        ensure!(
            a.session_value().await? == va,
            "A's cookie changed or vanished after the forged posts"
        );
        expect_logged_in(&a, user).await?;
        let rows = a.sessions().await?;
        ensure!(
            rows.len() == 2,
            "the forged revoke-others ended sessions: A now lists {rows:?}"
        );
        expect_logged_in(&b, user).await?;
        ensure!(b.session_value().await? == vb, "B's cookie changed");
        Ok(())
    }
    .await;
    finish(vec![a, b], r).await
}

// ============================================================== EX-12, EX-04, EX-13

/// Logout clears the cookie in the browser and ends the session on the server;
/// Back shows the login form, not the cached account page; private pages are
/// `no-store`; the logout response carries `Clear-Site-Data` and an expired
/// cookie.
pub async fn ex_12_ex_04_ex_13_logout_clears_and_back_shows_login(h: Arc<Harness>) -> Result<()> {
    let a = h.profile("ex12").await?;
    let r = async {
        let user = "ex12-mallory";
        a.signup(user, PASSWORD).await?;
        a.goto("/account").await?;
        let v1 = a.session_value().await?;

        // EX-13: private pages are never stored.
        let resp = get_with_cookie(&h.demo, "/account", &v1).await?;
        ensure!(
            resp.status() == 200,
            "GET /account with the cookie: {}",
            resp.status()
        );
        let cc = header(&resp, "cache-control").unwrap_or_default();
        ensure!(
            cc.to_ascii_lowercase().contains("no-store"),
            "GET /account answers Cache-Control {cc:?}, without no-store"
        );

        let logout = a.submit_button("#logout").await?;
        a.click_and_wait(&logout, "#logout").await?;
        a.wait_path("/login").await?;
        ensure!(
            a.session_cookie().await?.is_none(),
            "the browser still holds {COOKIE} after logout"
        );
        assert_cookie_dead(&h.demo, &v1, "the logged-out value (EX-04)").await?;

        // Back to the account page: refetched, so the login form, not a copy.
        a.client.back().await?;
        a.wait_path("/login").await.context("Back after logout")?;
        ensure!(a.exists("#login").await?, "Back after logout: no login form");
        ensure!(
            !a.exists("#whoami").await? && !a.body_text().await.contains(user),
            "Back after logout shows the private account page"
        );

        // The logout response itself, as seen on the wire.
        a.login(user, PASSWORD).await?;
        let v2 = a.session_value().await?;
        let fields = a
            .client
            .execute(
                "return Array.from(new FormData(document.querySelector('#logout')));",
                vec![],
            )
            .await?;
        let fields: Vec<(String, String)> = serde_json::from_value(fields)?;
        ensure!(
            fields.iter().any(|(k, v)| k == "csrf_token" && !v.is_empty()),
            "#logout has no csrf_token field: {fields:?}"
        );
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&fields)
            .finish();
        let resp = http_client()
            .post(h.demo.url("/logout"))
            .header("cookie", format!("{COOKIE}={v2}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let location = header(&resp, "location").unwrap_or_default();
        ensure!(
            status == 303 && location.ends_with("/login"),
            "POST /logout answered {status} to {location:?}, not 303 to /login"
        );
        let csd = header(&resp, "clear-site-data").unwrap_or_default();
        for directive in ["\"cache\"", "\"cookies\"", "\"storage\""] {
            ensure!(
                csd.contains(directive),
                "the logout response's Clear-Site-Data {csd:?} lacks {directive}"
            );
        }
        let set_cookies = headers_all(&resp, "set-cookie");
        let expired = set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{COOKIE}=")))
            .ok_or_else(|| anyhow!("the logout response expires no {COOKIE}: {set_cookies:?}"))?;
        let parsed = Cookie::parse(expired.clone())?;
        ensure!(
            parsed.value().is_empty()
                && (parsed.max_age() == Some(cookie::time::Duration::ZERO)
                    || parsed
                        .expires_datetime()
                        .is_some_and(|t| t.unix_timestamp() < 1_000_000_000)),
            "the logout Set-Cookie does not expire the cookie: {expired:?}"
        );
        ensure!(
            parsed.path() == Some("/")
                && parsed.secure() == Some(true)
                && parsed.http_only() == Some(true)
                && parsed.same_site() == Some(cookie::SameSite::Lax),
            "the expiring Set-Cookie lacks the cookie's own attributes: {expired:?}"
        );
        assert_cookie_dead(&h.demo, &v2, "the value logged out over HTTP").await?;
        Ok(())
    }
    .await;
    finish(vec![a], r).await
}

// ============================================================== EX-07

/// Deleting the account ends every session of it and the login stops working.
pub async fn ex_07_account_deletion_ends_all_sessions(h: Arc<Harness>) -> Result<()> {
    let a = h.profile("ex07-A").await?;
    let b = match h.profile("ex07-B").await {
        Ok(b) => b,
        Err(e) => return finish(vec![a], Err(e)).await,
    };
    let r = async {
        let user = "ex07-grace";
        a.signup(user, PASSWORD).await?;
        b.login(user, PASSWORD).await?;
        let (va, vb) = (a.session_value().await?, b.session_value().await?);

        a.goto("/account").await?;
        delete_account(&a, user).await?;
        if a.path().await? == "/reauth" {
            eprintln!("e2e: note: deleting the account asked for a step-up first");
            a.reauth(PASSWORD).await?;
            if a.path().await? == "/account" {
                delete_account(&a, user).await?;
            }
        }
        let landed = a.path().await?;
        ensure!(
            landed != "/account",
            "deleting the account left A on /account ({:?})",
            snippet(&a.body_text().await)
        );

        expect_logged_out(&a, "A after deleting the account").await?;
        expect_logged_out(&b, "B after A deleted the account").await?;
        assert_cookie_dead(&h.demo, &va, "A's value after deletion").await?;
        assert_cookie_dead(&h.demo, &vb, "B's value after deletion").await?;
        b.submit_login(user, PASSWORD).await?;
        expect_login_refused(&b, "the deleted account").await?;
        Ok(())
    }
    .await;
    finish(vec![a, b], r).await
}

/// Fills whatever `#delete-account` asks for (a password, the username) and submits it.
async fn delete_account(a: &Profile, user: &str) -> Result<()> {
    let form = a.find("#delete-account").await?;
    for input in form
        .find_all(fantoccini::Locator::Css(
            "input:not([type=hidden]):not([type=submit]):not([type=checkbox])",
        ))
        .await?
    {
        let kind = input.attr("type").await?.unwrap_or_default();
        input
            .send_keys(if kind == "password" { PASSWORD } else { user })
            .await?;
    }
    for checkbox in form
        .find_all(fantoccini::Locator::Css("input[type=checkbox]"))
        .await?
    {
        if !checkbox.is_selected().await? {
            checkbox.click().await?;
        }
    }
    let button = a.submit_button("#delete-account").await?;
    a.click_and_wait(&button, "#delete-account").await?;
    Ok(())
}
