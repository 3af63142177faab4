//! Server-rendered pages. Everything that comes from a user (names, user
//! agents, IPs, `next` URLs) goes through [`esc`].

use std::fmt::Write;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tessera_core::{Binding, SessionRecord, Timestamp};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The one stylesheet, served at `/style.css` so the CSP needs no inline
/// styles.
pub(crate) const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:flex-start;justify-content:center;
 background:#eef1f5;color:#1d2330;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{margin:8vh 16px;width:100%;max-width:920px;background:#fff;border-radius:12px;
 box-shadow:0 2px 12px rgba(20,30,60,.08);padding:32px 36px}
main.narrow{max-width:420px}
h1{margin:0 0 4px;font-size:1.6rem}
h2{margin:28px 0 10px;font-size:1.15rem}
p.sub{margin:0 0 24px;color:#5a6475}
label{display:block;margin:14px 0 4px;font-weight:600;font-size:.92rem}
input[type=text],input[type=password]{width:100%;padding:10px 12px;border:1px solid #c8cfdb;
 border-radius:8px;font-size:1rem}
input:focus{outline:2px solid #3b6fd8;border-color:#3b6fd8}
button{font:inherit;cursor:pointer;border-radius:8px;border:1px solid transparent;padding:9px 16px}
button.primary{margin-top:20px;width:100%;background:#2f5fc4;color:#fff;font-weight:600}
button.primary:hover{background:#254fa6}
button.secondary{background:#fff;border-color:#c8cfdb;color:#1d2330}
button.secondary:hover{background:#f3f5f9}
button.danger{background:#fff;border-color:#e2a5a5;color:#b42323}
button.danger:hover{background:#fdf1f1}
button.small{padding:4px 10px;font-size:.85rem}
form.inline{display:inline-block;margin:0}
.error{background:#fdecec;color:#8f1d1d;border:1px solid #f2c2c2;border-radius:8px;padding:10px 12px}
.alt{margin-top:18px;text-align:center;font-size:.92rem}
a{color:#2f5fc4}
table{width:100%;border-collapse:collapse;font-size:.92rem}
th,td{text-align:left;padding:9px 8px;border-bottom:1px solid #e6e9ef;vertical-align:middle}
th{font-size:.78rem;text-transform:uppercase;letter-spacing:.04em;color:#5a6475;white-space:nowrap}
td:nth-child(n+2),td button{white-space:nowrap}
tr.this-device td{background:#f3f7ff}
.badge{display:inline-block;margin-left:6px;padding:1px 8px;border-radius:999px;background:#2f5fc4;
 color:#fff;font-size:.72rem;font-weight:600;vertical-align:middle}
.muted{color:#5a6475}
.actions{display:flex;flex-wrap:wrap;gap:10px;margin-top:18px;align-items:center}
.actions a{margin-right:auto}
"#;

/// A whole page. Every page is `Cache-Control: no-store` (set by the app).
pub fn page(title: &str, narrow: bool, body: &str) -> Html<String> {
    let class = if narrow { " class=\"narrow\"" } else { "" };
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Tessera demo</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
<body><main{class}>{body}</main></body></html>\n",
        esc(title)
    ))
}

pub fn with_status(status: StatusCode, html: Html<String>) -> Response {
    (status, html).into_response()
}

fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
        esc(token)
    )
}

fn error_box(error: Option<&str>) -> String {
    error.map_or_else(String::new, |e| {
        format!("<p id=\"error\" class=\"error\" role=\"alert\">{}</p>", esc(e))
    })
}

pub fn signup(csrf: &str, username: &str, error: Option<&str>) -> Html<String> {
    page(
        "Create account",
        true,
        &format!(
            "<h1>Create an account</h1><p class=\"sub\">Tessera demo</p>{}\
<form method=\"post\" action=\"/signup\">{}\
<label for=\"username\">Username</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" required maxlength=\"64\" autofocus>\
<label for=\"password\">Password <span class=\"muted\">(at least 8 characters)</span></label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"new-password\" required minlength=\"8\">\
<button type=\"submit\" id=\"signup\" class=\"primary\">Create account</button></form>\
<p class=\"alt\">Have an account? <a href=\"/login\">Sign in</a></p>",
            error_box(error),
            csrf_field(csrf),
            esc(username)
        ),
    )
}

pub fn login(csrf: &str, username: &str, error: Option<&str>) -> Html<String> {
    page(
        "Sign in",
        true,
        &format!(
            "<h1>Sign in</h1><p class=\"sub\">Tessera demo</p>{}\
<form method=\"post\" action=\"/login\">{}\
<label for=\"username\">Username</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" required autofocus>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\" id=\"login\" class=\"primary\">Sign in</button></form>\
<p class=\"alt\">New here? <a href=\"/signup\">Create an account</a></p>",
            error_box(error),
            csrf_field(csrf),
            esc(username)
        ),
    )
}

pub fn reauth(csrf: &str, username: &str, next: &str, error: Option<&str>) -> Html<String> {
    page(
        "Confirm it's you",
        true,
        &format!(
            "<h1>Confirm it's you</h1><p class=\"sub\">Enter the password of <strong>{}</strong> to continue.</p>{}\
<form method=\"post\" action=\"/reauth\">{}\
<input type=\"hidden\" name=\"next\" value=\"{}\">\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required autofocus>\
<button type=\"submit\" id=\"reauth\" class=\"primary\">Continue</button></form>\
<p class=\"alt\"><a href=\"/account\">Back to your account</a></p>",
            esc(username),
            error_box(error),
            csrf_field(csrf),
            esc(next)
        ),
    )
}

pub fn password(csrf: &str, username: &str, error: Option<&str>) -> Html<String> {
    page(
        "Change password",
        true,
        &format!(
            "<h1>Change password</h1><p class=\"sub\">For <strong>{}</strong>. Every other session will be signed out.</p>{}\
<form method=\"post\" action=\"/account/password\">{}\
<input type=\"text\" name=\"username\" value=\"{}\" autocomplete=\"username\" hidden>\
<label for=\"new-password\">New password <span class=\"muted\">(at least 8 characters)</span></label>\
<input type=\"password\" id=\"new-password\" name=\"new_password\" autocomplete=\"new-password\" required minlength=\"8\" autofocus>\
<button type=\"submit\" id=\"save-password\" class=\"primary\">Save password</button></form>\
<p class=\"alt\"><a href=\"/account\">Back to your account</a></p>",
            esc(username),
            error_box(error),
            csrf_field(csrf),
            esc(username)
        ),
    )
}

fn when(t: Timestamp) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.to_offset_date_time()
        .format(&fmt)
        .unwrap_or_else(|_| t.to_rfc3339())
}

pub fn account(
    csrf: &str,
    username: &str,
    current: &str,
    sessions: &[std::sync::Arc<SessionRecord>],
) -> Html<String> {
    let csrf = csrf_field(csrf);
    let mut rows = String::new();
    for s in sessions {
        let this = s.handle == current;
        let _ = write!(
            rows,
            "<tr class=\"session{}\" data-handle=\"{}\">\
<td class=\"device\">{}{}{}</td><td class=\"ip\">{}</td><td class=\"created\">{}</td><td class=\"last-seen\">{}</td>\
<td><form class=\"inline\" method=\"post\" action=\"/account/sessions/{}/revoke\">{csrf}\
<button type=\"submit\" class=\"revoke secondary small\">{}</button></form></td></tr>",
            if this { " this-device" } else { "" },
            esc(&s.handle),
            esc(&s.device.label),
            if this {
                "<span class=\"badge\">this device</span>"
            } else {
                ""
            },
            if matches!(s.binding, Some(Binding::Dbsc { .. })) {
                "<span class=\"badge bound\" title=\"This session's cookie only works with a key held by the device\">device-bound (DBSC)</span>"
            } else {
                ""
            },
            esc(s.device.ip.as_deref().unwrap_or("–")),
            when(s.created_at),
            when(s.last_seen_at),
            esc(&s.handle),
            if this { "Sign out" } else { "Revoke" },
        );
    }
    page(
        "Account",
        false,
        &format!(
            "<h1>Your account</h1><p class=\"sub\">Signed in as <strong id=\"whoami\">{}</strong></p>\
<h2>Active sessions</h2>\
<table id=\"sessions\"><thead><tr><th>Device</th><th>IP address</th><th>Signed in</th><th>Last seen</th><th></th></tr></thead>\
<tbody>{rows}</tbody></table>\
<div class=\"actions\">\
<form id=\"revoke-others\" class=\"inline\" method=\"post\" action=\"/account/sessions/revoke-others\">{csrf}\
<button type=\"submit\" class=\"secondary\">Sign out all other sessions</button></form></div>\
<h2>Security</h2>\
<div class=\"actions\"><a id=\"change-password\" href=\"/account/password\">Change password</a>\
<form id=\"logout\" class=\"inline\" method=\"post\" action=\"/logout\">{csrf}\
<button type=\"submit\" class=\"secondary\">Sign out</button></form>\
<form id=\"delete-account\" class=\"inline\" method=\"post\" action=\"/account/delete\">{csrf}\
<button type=\"submit\" class=\"danger\">Delete account</button></form></div>",
            esc(username)
        ),
    )
}

pub fn message(status: StatusCode, title: &str, text: &str, link: (&str, &str)) -> Response {
    with_status(
        status,
        page(
            title,
            true,
            &format!(
                "<h1>{}</h1><p id=\"error\" class=\"error\" role=\"alert\">{}</p><p class=\"alt\"><a href=\"{}\">{}</a></p>",
                esc(title),
                esc(text),
                esc(link.0),
                esc(link.1)
            ),
        ),
    )
}
