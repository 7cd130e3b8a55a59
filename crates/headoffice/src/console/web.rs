//! The console's pages: server-rendered HTML (maud escapes every value), one small script, its
//! own HTTPS listener beside the sync port.
//!
//! Sign-in: an admin's name and password (Argon2id); the session cookie is `Secure`,
//! `HttpOnly`, `SameSite=Strict`, and the session ends after 15 minutes without a request.
//! Every form carries the session's CSRF token (the sign-in form a pre-session one), and a POST
//! without it is refused. Sign-in attempts are limited per account and per address. Every
//! action is audited with the admin's name. No page shows a visitor's value: only counts, times,
//! device and event names; the one way personal data leaves is an export's download.

use super::store::{self, Role};
use super::text::t;
use crate::admin;
use crate::crm;
use crate::keys::HoDir;
use crate::store::Store;
use crate::Passphrase;
use axum::extract::{ConnectInfo, Form, Path as AxPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use sealbox_protocol::{EventConfig, Lang};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins allowed per account, and per address, within [`ATTEMPT_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an approver has to decide on an unmasked export, and the requester then to fetch it.
pub const APPROVAL_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// How long a new device's enrolment file waits for its one download.
const ENROLMENT_TTL: Duration = Duration::from_secs(10 * 60);

const SESSION_COOKIE: &str = "sbx_session";
const PRE_COOKIE: &str = "sbx_pre";
const LANG_COOKIE: &str = "sbx_lang";

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// A device with waiting entries silent for longer than this is an alert.
    pub silent_alert: Duration,
}

struct PendingForget {
    subject: crm::Subject,
    event: Option<String>,
}

/// A signed-in admin, as a handler sees them.
#[derive(Clone)]
struct Who {
    id: String,
    admin: String,
    role: Role,
    csrf: String,
}

struct Download {
    bytes: Zeroizing<Vec<u8>>,
    name: String,
    made: Instant,
    for_session: String,
}

/// What the console's handlers share. Sessions and failed sign-ins are in the database (every
/// server on it shares them); a deletion request waiting for its confirmation and an enrolment
/// file waiting for its download stay in this server's memory (they hold a visitor's phone or
/// email, and a device's secret token).
pub struct Console {
    dir: PathBuf,
    store: Mutex<Store>,
    /// A deletion request waiting for its confirmation, by session id: never echoed into a
    /// page, never written down.
    forgets: Mutex<HashMap<String, PendingForget>>,
    downloads: Mutex<HashMap<String, Download>>,
    opts: ConsoleOptions,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs blocking work (the PostgreSQL client blocks, and so do the admin functions) on this
/// runtime thread, letting the runtime move its other tasks elsewhere meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The key a session or a sign-in counter is stored under: never the cookie, name or address
/// itself.
fn key_of(s: &str) -> String {
    sealbox_protocol::sha256_hex(s.as_bytes())
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    if getrandom::getrandom(&mut b).is_err() {
        // No randomness: no usable token. A fixed value would be guessable; refuse instead by
        // handing out a token nobody can present (sessions and checks compare exactly).
        return String::new();
    }
    hex::encode(b)
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Console {
    /// Opens the console over head office's data directory.
    pub fn open(dir: &std::path::Path, opts: ConsoleOptions) -> crate::error::Result<Console> {
        let ho = HoDir::new(dir);
        ho.require_initialised()?;
        let mut store = Store::open(&ho)?;
        store.console_migrate()?;
        Ok(Console::with_store(dir, store, opts))
    }

    fn with_store(dir: &std::path::Path, store: Store, opts: ConsoleOptions) -> Console {
        Console {
            dir: dir.to_path_buf(),
            store: Mutex::new(store),
            forgets: Mutex::new(HashMap::new()),
            downloads: Mutex::new(HashMap::new()),
            opts,
        }
    }

    /// Runs `f` on the console's store connection, off the runtime's scheduling.
    fn db<T>(
        &self,
        f: impl FnOnce(&mut Store) -> crate::error::Result<T>,
    ) -> crate::error::Result<T> {
        blocking(|| f(&mut lock(&self.store)))
    }

    fn audit(&self, who: &str, action: &str, mut detail: serde_json::Value) {
        if let Some(o) = detail.as_object_mut() {
            o.insert("admin".into(), who.into());
        }
        let audit = crate::store::Audit::new(crate::now_ms(), action, detail);
        if let Err(e) = self.db(|s| s.audit_append(audit)) {
            tracing::error!(error = %e, action, "console audit row not written");
        }
    }

    fn who(&self, headers: &HeaderMap) -> Option<Who> {
        let id = cookie(headers, SESSION_COOKIE).filter(|id| !id.is_empty())?;
        let now = crate::now_ms();
        let s = match self.db(|s| s.session_touch(&key_of(&id), now, now - ms(IDLE))) {
            Ok(s) => s?,
            Err(e) => {
                tracing::error!(error = %e, "console session lookup failed");
                return None;
            }
        };
        Some(Who {
            id,
            admin: s.admin,
            role: s.role,
            csrf: s.csrf,
        })
    }

    /// Whether `key` (an account or an address) may try to sign in now. A database that does
    /// not answer allows no attempt.
    fn may_try(&self, key: &str) -> bool {
        let start = crate::now_ms() - ms(ATTEMPT_WINDOW);
        self.db(|s| s.sign_in_failures(&key_of(key), start))
            .map(|n| n < MAX_FAILURES)
            .unwrap_or(false)
    }

    fn failed(&self, key: &str) {
        let now = crate::now_ms();
        if let Err(e) = self.db(|s| s.sign_in_failed(&key_of(key), now, now - ms(ATTEMPT_WINDOW))) {
            tracing::error!(error = %e, "a failed console sign-in was not counted");
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(r: &mut Response, name: &str, value: &str, max_age: Option<u64>) {
    let mut c = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn lang_of(headers: &HeaderMap) -> Lang {
    match cookie(headers, LANG_COOKIE).as_deref() {
        Some("zh") => return Lang::Zh,
        Some("en") => return Lang::En,
        _ => {}
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim_start().to_ascii_lowercase().starts_with("zh") {
        Lang::Zh
    } else {
        Lang::En
    }
}

fn fmt_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| "-".into())
}

fn fmt_age(l: Lang, secs: u64) -> String {
    let (n, unit) = if secs < 120 {
        (secs, "unit_s")
    } else if secs < 7200 {
        (secs / 60, "unit_min")
    } else if secs < 3 * 86400 {
        (secs / 3600, "unit_h")
    } else {
        (secs / 86400, "unit_d")
    };
    format!("{n} {}", t(l, unit))
}

/// Adds the headers every console answer carries.
fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("strict-transport-security", "max-age=31536000"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

const NAV: [(&str, &str); 6] = [
    ("/overview", "nav_overview"),
    ("/devices", "nav_devices"),
    ("/events", "nav_events"),
    ("/exports", "nav_exports"),
    ("/forget", "nav_forget"),
    ("/audit", "nav_audit"),
];

fn page(l: Lang, who: Option<&Who>, here: &str, title: &str, body: Markup) -> Response {
    let lang_attr = match l {
        Lang::Zh => "zh-CN",
        Lang::En => "en",
    };
    let doc = html! {
        (DOCTYPE)
        html lang=(lang_attr) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (t(l, "app_name")) }
                link rel="stylesheet" href="/console.css";
                script src="/console.js" defer {}
            }
            body {
                header {
                    span.brand { (t(l, "app_name")) }
                    @if who.is_some() {
                        nav {
                            @for (href, key) in NAV {
                                @if *href == *here { a.active href=(href) { (t(l, key)) } }
                                @else { a href=(href) { (t(l, key)) } }
                            }
                        }
                    }
                    span.right {
                        a href={ "/lang/zh?back=" (here) } { "中文" } " | "
                        a href={ "/lang/en?back=" (here) } { "English" }
                        @if let Some(w) = who {
                            " · " span #who { (w.admin) " (" (t(l, w.role.as_str())) ")" }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(w.csrf);
                                button type="submit" { (t(l, "sign_out")) }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    harden(Html(doc.into_string()).into_response())
}

fn message(l: Lang, who: &Who, here: &str, title: &str, text: &str, back: &str) -> Response {
    page(
        l,
        Some(who),
        here,
        title,
        html! { p.notice { (text) } p { a href=(back) { (t(l, "back")) } } },
    )
}

fn forbidden(l: Lang, who: &Who, here: &str) -> Response {
    let mut r = message(
        l,
        who,
        here,
        t(l, "forbidden_title"),
        t(l, "forbidden"),
        "/overview",
    );
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

fn csrf_refused(l: Lang) -> Response {
    harden(
        (
            StatusCode::FORBIDDEN,
            Html(
                html! { (DOCTYPE) html { body { p #csrf-refused { (t(l, "csrf_refused")) } } } }
                    .into_string(),
            ),
        )
            .into_response(),
    )
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// The routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/overview") }))
        .route("/console.css", get(css))
        .route("/console.js", get(js))
        .route("/lang/{to}", get(set_lang))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/overview", get(overview))
        .route("/devices", get(devices))
        .route("/devices/enrol", post(enrol))
        .route("/devices/enrolment/{token}", get(enrolment_download))
        .route("/devices/revoke", get(revoke_confirm).post(revoke))
        .route("/events", get(events).post(event_create))
        .route("/events/preview/{id}", get(event_preview))
        .route("/exports", get(exports))
        .route("/exports/masked", post(export_masked))
        .route("/exports/request", post(export_request))
        .route("/exports/decide", post(export_decide))
        .route("/exports/download", post(export_download))
        .route("/forget", get(forget_page).post(forget_check))
        .route("/forget/confirm", post(forget_confirm))
        .route("/audit", get(audit))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .with_state(console)
}

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: rustls::ServerConfig,
    console: Arc<Console>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    axum_server::from_tcp_rustls(listener, config)
        .handle(handle)
        .serve(router(console).into_make_service_with_connect_info::<SocketAddr>())
        .await
}

async fn css() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response();
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

async fn set_lang(AxPath(to): AxPath<String>, Query(q): Query<Back>) -> Response {
    let back = q
        .back
        .filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/overview".into());
    let mut r = Redirect::to(&back).into_response();
    let v = if to == "zh" { "zh" } else { "en" };
    set_cookie(&mut r, LANG_COOKIE, v, Some(365 * 86400));
    r
}

// ---- sign-in ----

fn login_form(l: Lang, pre: &str, error: Option<&str>) -> Response {
    let mut r = page(
        l,
        None,
        "/login",
        t(l, "sign_in"),
        html! {
            @if let Some(e) = error { p.error #login-error { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(pre);
                label { (t(l, "admin_name")) input #name type="text" name="name" autocomplete="username" required; }
                label { (t(l, "password")) input #password type="password" name="password" autocomplete="current-password" required; }
                button #sign-in type="submit" { (t(l, "sign_in")) }
            }
        },
    );
    set_cookie(&mut r, PRE_COOKIE, pre, Some(3600));
    r
}

async fn login_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    if c.who(&headers).is_some() {
        return Redirect::to("/overview").into_response();
    }
    let pre = cookie(&headers, PRE_COOKIE)
        .filter(|p| p.len() == 64)
        .unwrap_or_else(random_hex);
    login_form(l, &pre, None)
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    name: String,
    password: String,
}

async fn login(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let l = lang_of(&headers);
    let password = Zeroizing::new(f.password);
    let Some(pre) = cookie(&headers, PRE_COOKIE) else {
        return csrf_refused(l);
    };
    if !same(&pre, &f.csrf) {
        return csrf_refused(l);
    }
    let account = format!("account:{}", f.name);
    let address = format!("address:{}", peer.ip());
    if !c.may_try(&account) || !c.may_try(&address) {
        let typed = if super::valid_name(&f.name) {
            f.name.as_str()
        } else {
            "(not a name)"
        };
        c.audit(typed, "console.sign_in_limited", serde_json::json!({}));
        let mut r = login_form(l, &pre, Some(t(l, "too_many_attempts")));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    }
    let admin = c.db(|s| s.admin_get(&f.name)).ok().flatten();
    let ok = {
        let phc = admin.as_ref().map(|a| a.password_hash.clone());
        let password = password.clone();
        tokio::task::spawn_blocking(move || match phc {
            Some(h) => super::password_matches(&password, &h),
            None => {
                // The same work for an unknown name, so timing does not tell names apart.
                let _ = super::hash_password(&password);
                false
            }
        })
        .await
        .unwrap_or(false)
    };
    let Some(admin) = admin.filter(|_| ok) else {
        c.failed(&account);
        c.failed(&address);
        // The name as typed only when it could be an admin's: whatever else was typed there
        // (a password, a phone) stays out of the log.
        let typed = if super::valid_name(&f.name) {
            f.name.as_str()
        } else {
            "(not a name)"
        };
        c.audit(typed, "console.sign_in_failed", serde_json::json!({}));
        let mut r = login_form(l, &pre, Some(t(l, "bad_sign_in")));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let id = random_hex();
    if id.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no randomness").into_response();
    }
    let now = crate::now_ms();
    let session = store::SessionRow {
        id_sha256: key_of(&id),
        admin: admin.name.clone(),
        role: admin.role,
        csrf: random_hex(),
        last_seen_ms: now,
    };
    if let Err(e) = c.db(|s| {
        s.session_insert(&session, now - ms(IDLE))?;
        s.sign_in_clear(&key_of(&account))
    }) {
        tracing::error!(error = %e, "console session not stored");
        return (StatusCode::SERVICE_UNAVAILABLE, t(l, "internal")).into_response();
    }
    c.audit(&admin.name, "console.signed_in", serde_json::json!({}));
    let mut r = Redirect::to("/overview").into_response();
    set_cookie(&mut r, SESSION_COOKIE, &id, None);
    set_cookie(&mut r, PRE_COOKIE, "", Some(0));
    r
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn logout(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    if !same(&w.csrf, &f.csrf) {
        return csrf_refused(l);
    }
    lock(&c.forgets).remove(&w.id);
    if let Err(e) = c.db(|s| s.session_delete(&key_of(&w.id))) {
        tracing::error!(error = %e, "console session not deleted");
    }
    c.audit(&w.admin, "console.signed_out", serde_json::json!({}));
    let mut r = Redirect::to("/login").into_response();
    set_cookie(&mut r, SESSION_COOKIE, "", Some(0));
    r
}

/// The signed-in admin for a POST whose form carried `csrf`, or the answer to give instead.
#[allow(clippy::result_large_err)] // the refusal is the answer itself, made once per request
fn post_guard(c: &Console, headers: &HeaderMap, csrf: &str) -> Result<(Lang, Who), Response> {
    let l = lang_of(headers);
    let Some(w) = c.who(headers) else {
        return Err(to_login());
    };
    if !same(&w.csrf, csrf) {
        tracing::warn!(admin = %w.admin, "console POST without its CSRF token refused");
        return Err(csrf_refused(l));
    }
    Ok((l, w))
}

// ---- overview ----

struct EventView {
    config: Option<EventConfig>,
    count: admin::EventCount,
}

fn events_with_configs(c: &Console) -> crate::error::Result<Vec<EventView>> {
    let status = blocking(|| admin::status(&c.dir))?;
    let configs = crm_configs(c)?;
    Ok(status
        .events
        .into_iter()
        .map(|count| EventView {
            config: configs.get(&count.id).cloned(),
            count,
        })
        .collect())
}

/// Every event's config, by id, as `event create` stored it.
fn crm_configs(c: &Console) -> crate::error::Result<HashMap<String, EventConfig>> {
    Ok(c.db(|s| s.events())?
        .into_iter()
        .filter_map(|(id, json)| serde_json::from_str(&json).ok().map(|cfg| (id, cfg)))
        .collect())
}

fn event_name(l: Lang, e: &EventView) -> String {
    e.config
        .as_ref()
        .map(|c| c.name.get(l).to_string())
        .unwrap_or_else(|| e.count.id.clone())
}

fn chart(l: Lang, per_hour: &[(i64, u64)]) -> Markup {
    if per_hour.is_empty() {
        return html! { p.muted { (t(l, "no_entries_yet")) } };
    }
    // The last 48 hours that have entries, oldest first.
    let last = per_hour.last().map(|(h, _)| *h).unwrap_or(0);
    let first = (last - 47 * 3_600_000).max(per_hour[0].0);
    let mut bars: Vec<(i64, u64)> = Vec::new();
    let mut h = first;
    let counts: HashMap<i64, u64> = per_hour.iter().copied().collect();
    while h <= last {
        bars.push((h, counts.get(&h).copied().unwrap_or(0)));
        h += 3_600_000;
    }
    let max = bars.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let w = 14;
    let height = 120;
    let width = (bars.len() * w + 40).max(360);
    html! {
        svg.chart width=(width) height=(height + 40) role="img" aria-label=(t(l, "per_hour")) {
            @for (i, (hour, n)) in bars.iter().enumerate() {
                @let bh = (*n as f64 / max as f64 * height as f64).round() as u64;
                rect x=(30 + i * w) y=(height as u64 - bh + 10) width=(w - 3) height=(bh) {
                    title { (fmt_time(*hour)) ": " (n) }
                }
            }
            text x="0" y="20" { (max) }
            text x="0" y=(height + 10) { "0" }
            text x="30" y=(height + 30) { (fmt_time(bars[0].0)) }
        }
    }
}

async fn overview(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    let now = crate::now_ms();
    let loaded = (|| -> crate::error::Result<_> {
        let events = events_with_configs(&c)?;
        let status = blocking(|| admin::status(&c.dir))?;
        let (health, per_hour) = c.db(|s| {
            let health = s.health_all()?;
            let mut per_hour = HashMap::new();
            for e in &events {
                per_hour.insert(e.count.id.clone(), s.entries_per_hour(&e.count.id)?);
            }
            Ok((health, per_hour))
        })?;
        Ok((events, status, health, per_hour))
    })();
    let (events, status, health, per_hour) = match loaded {
        Ok(x) => x,
        Err(e) => {
            return message(
                l,
                &w,
                "/overview",
                t(l, "nav_overview"),
                &e.message(l),
                "/overview",
            )
        }
    };
    // Alerts: counts and names only.
    let mut alerts: Vec<String> = Vec::new();
    let silent_ms = c.opts.silent_alert.as_millis() as i64;
    let warn_days: HashMap<&str, u32> = events
        .iter()
        .filter_map(|e| {
            e.config
                .as_ref()
                .map(|c| (e.count.id.as_str(), c.kiosk.warn_waiting_days))
        })
        .collect();
    for d in &status.devices {
        if d.revoked {
            continue;
        }
        let Some(h) = health.get(&d.name) else {
            continue;
        };
        let waiting = h.report.pending + h.report.exported;
        let silent = now - h.seen_at_ms;
        if waiting > 0 && silent > silent_ms {
            alerts.push(
                t(l, "alert_silent")
                    .replace("{device}", &d.name)
                    .replace("{n}", &waiting.to_string())
                    .replace("{age}", &fmt_age(l, (silent / 1000) as u64)),
            );
        }
        if let (Some(age), Some(days)) =
            (h.report.oldest_waiting_s, warn_days.get(d.event.as_str()))
        {
            let age_now = age + ((now - h.seen_at_ms).max(0) / 1000) as u64;
            if *days > 0 && age_now > *days as u64 * 86400 {
                alerts.push(
                    t(l, "alert_waited")
                        .replace("{device}", &d.name)
                        .replace("{age}", &fmt_age(l, age_now))
                        .replace("{days}", &days.to_string()),
                );
            }
        }
        if h.report.quarantined > 0 {
            alerts.push(
                t(l, "alert_device_quarantine")
                    .replace("{device}", &d.name)
                    .replace("{n}", &h.report.quarantined.to_string()),
            );
        }
    }
    for e in &events {
        if e.count.quarantined > 0 {
            alerts.push(
                t(l, "alert_ho_quarantine")
                    .replace("{event}", &event_name(l, e))
                    .replace("{n}", &e.count.quarantined.to_string()),
            );
        }
    }
    let reporting = |event: &str| {
        status
            .devices
            .iter()
            .filter(|d| d.event == event && !d.revoked)
            .filter(|d| {
                health
                    .get(&d.name)
                    .is_some_and(|h| now - h.seen_at_ms <= silent_ms)
            })
            .count()
    };
    let enrolled = |event: &str| {
        status
            .devices
            .iter()
            .filter(|d| d.event == event && !d.revoked)
            .count()
    };
    page(
        l,
        Some(&w),
        "/overview",
        t(l, "nav_overview"),
        html! {
            section #alerts {
                h2 { (t(l, "alerts")) }
                @if alerts.is_empty() { p.muted { (t(l, "no_alerts")) } }
                @else { ul.alerts { @for a in &alerts { li { (a) } } } }
            }
            @for e in &events {
                section.event {
                    h2 { (event_name(l, e)) " " small.muted { (e.count.id) } }
                    table {
                        tr { th { (t(l, "entries_received")) } th { (t(l, "devices_reporting")) } th { (t(l, "quarantined")) } th { (t(l, "deleted")) } }
                        tr {
                            td.num { (e.count.entries) }
                            td.num { (reporting(&e.count.id)) " / " (enrolled(&e.count.id)) }
                            td.num { (e.count.quarantined) }
                            td.num { (e.count.deleted) }
                        }
                    }
                    h3 { (t(l, "per_hour")) }
                    (chart(l, per_hour.get(&e.count.id).map(Vec::as_slice).unwrap_or(&[])))
                }
            }
        },
    )
}

// ---- devices ----

async fn devices(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    devices_page(&c, l, &w, None)
}

fn devices_page(c: &Console, l: Lang, w: &Who, notice: Option<Markup>) -> Response {
    let now = crate::now_ms();
    let loaded = (|| -> crate::error::Result<_> {
        let status = blocking(|| admin::status(&c.dir))?;
        Ok((status, c.db(|s| s.health_all())?))
    })();
    let (status, health) = match loaded {
        Ok(x) => x,
        Err(e) => {
            return message(
                l,
                w,
                "/devices",
                t(l, "nav_devices"),
                &e.message(l),
                "/overview",
            )
        }
    };
    let may_change = w.role >= Role::Operator;
    page(
        l,
        Some(w),
        "/devices",
        t(l, "nav_devices"),
        html! {
            @if let Some(n) = notice { (n) }
            table #devices {
                tr {
                    th { (t(l, "device")) } th { (t(l, "event")) } th { (t(l, "last_seen")) }
                    th { (t(l, "waiting")) } th { (t(l, "in_batch_files")) } th { (t(l, "quarantined")) }
                    th { (t(l, "oldest_waiting")) } th { (t(l, "received")) } th { (t(l, "app_version")) }
                    th { (t(l, "last_error")) } th { (t(l, "state")) }
                    @if may_change { th {} }
                }
                @for d in &status.devices {
                    @let h = health.get(&d.name);
                    tr data-device=(d.name) {
                        td.name { (d.name) }
                        td { (d.event) }
                        td { @if let Some(h) = h { (fmt_time(h.seen_at_ms)) " (" (fmt_age(l, ((now - h.seen_at_ms).max(0) / 1000) as u64)) ")" } @else { span.muted { (t(l, "never")) } } }
                        td.num.waiting { @if let Some(h) = h { (h.report.pending) } @else { "-" } }
                        td.num { @if let Some(h) = h { (h.report.exported) } @else { "-" } }
                        td.num { @if let Some(h) = h { (h.report.quarantined) } @else { "-" } }
                        td { @if let Some(a) = h.and_then(|h| h.report.oldest_waiting_s) { (fmt_age(l, a)) } @else { "-" } }
                        td.num { (d.entries) }
                        td { @if let Some(h) = h { (h.report.app_version) } @else { "-" } }
                        td { @if let Some(e) = h.and_then(|h| h.report.last_error.as_deref()) { code { (e) } } @else { "-" } }
                        td.state { @if d.revoked { span.bad { (t(l, "revoked")) } } @else { (t(l, "active")) } }
                        @if may_change {
                            td { @if !d.revoked { a.revoke href={ "/devices/revoke?name=" (d.name) } { (t(l, "revoke")) } } }
                        }
                    }
                }
            }
            @if may_change {
                h2 { (t(l, "enrol_device")) }
                form #enrol method="post" action="/devices/enrol" {
                    input type="hidden" name="csrf" value=(w.csrf);
                    label { (t(l, "device_name")) input #device-name type="text" name="device" required maxlength="64"; }
                    label { (t(l, "event")) select #device-event name="event" {
                        @for e in &status.events { option value=(e.id) { (e.id) } }
                    } }
                    button #enrol-submit type="submit" { (t(l, "enrol")) }
                }
                p.muted { (t(l, "enrol_hint")) }
            }
        },
    )
}

#[derive(Deserialize)]
struct EnrolForm {
    csrf: String,
    device: String,
    event: String,
}

async fn enrol(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<EnrolForm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if w.role < Role::Operator {
        return forbidden(l, &w, "/devices");
    }
    let dir = c.dir.clone();
    let (device, event) = (f.device.clone(), f.event.clone());
    let made =
        tokio::task::spawn_blocking(move || -> Result<Zeroizing<Vec<u8>>, crate::HoError> {
            admin::enroll_bytes(&dir, &device, &event, None)
        })
        .await;
    match made {
        Ok(Ok(bytes)) => {
            c.audit(
                &w.admin,
                "console.device_enrolled",
                serde_json::json!({"device": f.device, "event": f.event}),
            );
            let token = random_hex();
            lock(&c.downloads).insert(
                token.clone(),
                Download {
                    bytes,
                    name: format!("{}.enrol.json", f.device),
                    made: Instant::now(),
                    for_session: w.id.clone(),
                },
            );
            let notice = html! {
                div.secret #enrolled {
                    p { strong { (t(l, "enrolled").replace("{device}", &f.device)) } }
                    p { (t(l, "enrolment_secret")) }
                    p { a #enrolment-download href={ "/devices/enrolment/" (token) } download { (t(l, "download_once")) } }
                }
            };
            devices_page(&c, l, &w, Some(notice))
        }
        Ok(Err(e)) => devices_page(
            &c,
            l,
            &w,
            Some(html! { p.error #enrol-error { (e.message(l)) } }),
        ),
        Err(_) => devices_page(&c, l, &w, Some(html! { p.error { (t(l, "internal")) } })),
    }
}

async fn enrolment_download(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    AxPath(token): AxPath<String>,
) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    let d = {
        let mut downloads = lock(&c.downloads);
        downloads.retain(|_, d| d.made.elapsed() < ENROLMENT_TTL);
        match downloads.get(&token) {
            Some(d) if d.for_session == w.id => downloads.remove(&token),
            _ => None,
        }
    };
    let Some(d) = d else {
        return message(
            l,
            &w,
            "/devices",
            t(l, "nav_devices"),
            t(l, "download_gone"),
            "/devices",
        );
    };
    c.audit(
        &w.admin,
        "console.enrolment_downloaded",
        serde_json::json!({"file": d.name}),
    );
    attachment(&d.name, "application/json", d.bytes.to_vec())
}

fn attachment(name: &str, mime: &'static str, bytes: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    harden(r)
}

#[derive(Deserialize)]
struct NameQuery {
    name: String,
}

async fn revoke_confirm(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<NameQuery>,
) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    if w.role < Role::Operator {
        return forbidden(l, &w, "/devices");
    }
    page(
        l,
        Some(&w),
        "/devices",
        t(l, "revoke"),
        html! {
            p.warning { (t(l, "revoke_confirm").replace("{device}", &q.name)) }
            form method="post" action="/devices/revoke" {
                input type="hidden" name="csrf" value=(w.csrf);
                input type="hidden" name="name" value=(q.name);
                button.danger #revoke-confirm type="submit" { (t(l, "revoke")) }
                " " a href="/devices" { (t(l, "cancel")) }
            }
        },
    )
}

#[derive(Deserialize)]
struct RevokeForm {
    csrf: String,
    name: String,
}

async fn revoke(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<RevokeForm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if w.role < Role::Operator {
        return forbidden(l, &w, "/devices");
    }
    match blocking(|| admin::device_revoke(&c.dir, &f.name)) {
        Ok(()) => {
            c.audit(
                &w.admin,
                "console.device_revoked",
                serde_json::json!({"device": f.name}),
            );
            devices_page(
                &c,
                l,
                &w,
                Some(
                    html! { p.notice #revoked { (t(l, "revoked_notice").replace("{device}", &f.name)) } },
                ),
            )
        }
        Err(e) => devices_page(&c, l, &w, Some(html! { p.error { (e.message(l)) } })),
    }
}

// ---- events ----

async fn events(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    events_page(&c, l, &w, None, "")
}

fn events_page(c: &Console, l: Lang, w: &Who, notice: Option<Markup>, json: &str) -> Response {
    let events = match events_with_configs(c) {
        Ok(e) => e,
        Err(e) => {
            return message(
                l,
                w,
                "/events",
                t(l, "nav_events"),
                &e.message(l),
                "/overview",
            )
        }
    };
    page(
        l,
        Some(w),
        "/events",
        t(l, "nav_events"),
        html! {
            @if let Some(n) = notice { (n) }
            table #events {
                tr { th { (t(l, "event")) } th { (t(l, "event_id")) } th { (t(l, "fields")) } th { (t(l, "retention")) } th { (t(l, "entries_received")) } th {} }
                @for e in &events {
                    tr {
                        td.event-name { (event_name(l, e)) }
                        td { (e.count.id) }
                        td.num { (e.config.as_ref().map(|c| c.fields.len()).unwrap_or(0)) }
                        td { (e.config.as_ref().map(|c| c.consent.retention_days).unwrap_or(0)) " " (t(l, "unit_d")) }
                        td.num { (e.count.entries) }
                        td { a href={ "/events/preview/" (e.count.id) } { (t(l, "preview")) } }
                    }
                }
            }
            @if w.role >= Role::Operator {
                h2 { (t(l, "create_event")) }
                form #event-create method="post" action="/events" {
                    input type="hidden" name="csrf" value=(w.csrf);
                    label { (t(l, "event_file")) input #event-file type="file" accept=".json,application/json"; }
                    label { (t(l, "event_json")) textarea #event-json name="json" rows="12" cols="80" { (json) } }
                    button #event-submit type="submit" { (t(l, "create")) }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct EventForm {
    csrf: String,
    json: String,
}

async fn event_create(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<EventForm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if w.role < Role::Operator {
        return forbidden(l, &w, "/events");
    }
    match blocking(|| admin::event_create(&c.dir, &f.json)) {
        Ok(cfg) => {
            c.audit(
                &w.admin,
                "console.event_created",
                serde_json::json!({"event": cfg.id}),
            );
            events_page(
                &c,
                l,
                &w,
                Some(
                    html! { p.notice #event-created { (t(l, "event_created").replace("{event}", &cfg.id)) } },
                ),
                "",
            )
        }
        Err(e) => events_page(
            &c,
            l,
            &w,
            Some(html! { p.error #event-error { (e.message(l)) } }),
            &f.json,
        ),
    }
}

async fn event_preview(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    AxPath(id): AxPath<String>,
) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    let cfg = c.db(|s| s.event(&id));
    let cfg = match cfg {
        Ok(cfg) => cfg,
        Err(e) => return message(l, &w, "/events", t(l, "preview"), &e.message(l), "/events"),
    };
    page(
        l,
        Some(&w),
        "/events",
        &format!("{} · {}", t(l, "preview"), cfg.name.get(l)),
        html! {
            p.muted { (t(l, "preview_hint")) }
            div.kiosk {
                h2 { (cfg.name.get(l)) }
                @for field in &cfg.fields {
                    div.field {
                        label { (field.label.get(l)) @if field.required { " *" } }
                        @if field.options.is_empty() { input type="text" disabled; }
                        @else { select disabled { @for o in &field.options { option { (o.label.get(l)) } } } }
                        @if let Some(p) = &field.purpose { p.purpose { (p.get(l)) } }
                    }
                }
                div.consent {
                    p { (cfg.consent.text.get(l)) }
                    p.muted { (t(l, "consent_version")) ": " (cfg.consent.version) " · " (t(l, "retention")) ": " (cfg.consent.retention_days) " " (t(l, "unit_d")) }
                }
            }
        },
    )
}

// ---- exports ----

async fn exports(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    exports_page(&c, l, &w, None)
}

fn exports_page(c: &Console, l: Lang, w: &Who, notice: Option<Markup>) -> Response {
    if w.role < Role::Operator {
        return forbidden(l, w, "/exports");
    }
    let now = crate::now_ms();
    let loaded = (|| -> crate::error::Result<_> {
        let status = blocking(|| admin::status(&c.dir))?;
        Ok((status, c.db(|s| s.export_requests())?))
    })();
    let (status, requests) = match loaded {
        Ok(x) => x,
        Err(e) => {
            return message(
                l,
                w,
                "/exports",
                t(l, "nav_exports"),
                &e.message(l),
                "/overview",
            )
        }
    };
    let event_select = html! {
        select name="event" { @for e in &status.events { option value=(e.id) { (e.id) } } }
    };
    let format_select = html! {
        select name="format" { option value="csv" { "CSV" } option value="xlsx" { "XLSX" } }
    };
    page(
        l,
        Some(w),
        "/exports",
        t(l, "nav_exports"),
        html! {
            @if let Some(n) = notice { (n) }
            h2 { (t(l, "masked_export")) }
            p.muted { (t(l, "masked_hint")) }
            form #export-masked method="post" action="/exports/masked" {
                input type="hidden" name="csrf" value=(w.csrf);
                label { (t(l, "event")) (event_select) }
                label { (t(l, "format")) (format_select) }
                label { (t(l, "passphrase")) input type="password" name="passphrase" autocomplete="off" required; }
                button type="submit" { (t(l, "download")) }
            }
            h2 { (t(l, "unmasked_request")) }
            p.muted { (t(l, "unmasked_hint")) }
            form #export-request method="post" action="/exports/request" {
                input type="hidden" name="csrf" value=(w.csrf);
                label { (t(l, "event")) (event_select) }
                label { (t(l, "format")) (format_select) }
                label { (t(l, "reason")) input #export-reason type="text" name="reason" maxlength="200" required; }
                button #export-request-submit type="submit" { (t(l, "ask_approval")) }
            }
            h2 { (t(l, "requests")) }
            table #export-requests {
                tr { th { (t(l, "requested_at")) } th { (t(l, "event")) } th { (t(l, "format")) } th { (t(l, "reason")) } th { (t(l, "requested_by")) } th { (t(l, "state")) } th {} }
                @for r in &requests {
                    @let expired = r.decision.is_none() && now - r.requested_at_ms > APPROVAL_WINDOW_MS;
                    tr data-request=(r.id) {
                        td { (fmt_time(r.requested_at_ms)) }
                        td { (r.event_id) }
                        td { (r.format.to_uppercase()) }
                        td { (r.reason) }
                        td { (r.requested_by) }
                        td.state {
                            @if r.downloaded_at_ms.is_some() { (t(l, "downloaded")) }
                            @else if expired { (t(l, "expired")) }
                            @else { @match r.decision.as_deref() {
                                Some("approved") => { (t(l, "approved")) " (" (r.decided_by.as_deref().unwrap_or("")) ")" }
                                Some(_) => { (t(l, "refused")) " (" (r.decided_by.as_deref().unwrap_or("")) ")" }
                                None => { (t(l, "waiting_approval")) }
                            } }
                        }
                        td {
                            @if r.decision.is_none() && !expired && w.role == Role::Approver && r.requested_by != w.admin {
                                form.inline method="post" action="/exports/decide" {
                                    input type="hidden" name="csrf" value=(w.csrf);
                                    input type="hidden" name="id" value=(r.id);
                                    button.approve type="submit" name="decision" value="approved" { (t(l, "approve")) }
                                    button.refuse type="submit" name="decision" value="refused" { (t(l, "refuse")) }
                                }
                            }
                            @if r.decision.as_deref() == Some("approved") && r.downloaded_at_ms.is_none()
                                && r.requested_by == w.admin
                                && r.decided_at_ms.is_some_and(|d| now - d <= APPROVAL_WINDOW_MS) {
                                form.inline.download method="post" action="/exports/download" {
                                    input type="hidden" name="csrf" value=(w.csrf);
                                    input type="hidden" name="id" value=(r.id);
                                    input type="password" name="passphrase" placeholder=(t(l, "passphrase")) autocomplete="off" required;
                                    button type="submit" { (t(l, "download_once")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct MaskedForm {
    csrf: String,
    event: String,
    format: String,
    passphrase: String,
}

/// Runs the CRM export into memory: nothing of it is written to disk.
async fn export_bytes(
    c: &Console,
    event: &str,
    format: &str,
    pass: Passphrase,
    unmasked: bool,
) -> Result<(Vec<u8>, String, &'static str), crate::HoError> {
    let (fmt, ext, mime) = if format == "xlsx" {
        (
            crm::Format::Xlsx,
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    } else {
        (crm::Format::Csv, "csv", "text/csv; charset=utf-8")
    };
    let dir = c.dir.clone();
    let event = event.to_string();
    let name = format!(
        "{event}{}.{ext}",
        if unmasked { "-unmasked" } else { "-masked" }
    );
    tokio::task::spawn_blocking(move || {
        let options = crm::ExportOptions {
            unmasked,
            ..crm::ExportOptions::default()
        };
        let (bytes, _) = crm::export_bytes(&dir, &pass, &event, fmt, options, &mut |_, _| {})?;
        Ok((bytes.to_vec(), name, mime))
    })
    .await
    .map_err(|e| crate::HoError::Config(e.to_string()))?
}

async fn export_masked(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<MaskedForm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if w.role < Role::Operator {
        return forbidden(l, &w, "/exports");
    }
    match export_bytes(
        &c,
        &f.event,
        &f.format,
        Passphrase::new(f.passphrase),
        false,
    )
    .await
    {
        Ok((bytes, name, mime)) => {
            c.audit(
                &w.admin,
                "console.export_masked",
                serde_json::json!({"event": f.event, "format": f.format}),
            );
            attachment(&name, mime, bytes)
        }
        Err(e) => exports_page(&c, l, &w, Some(html! { p.error { (e.message(l)) } })),
    }
}

#[derive(Deserialize)]
struct RequestForm {
    csrf: String,
    event: String,
    format: String,
    reason: String,
}

async fn export_request(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<RequestForm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if w.role < Role::Operator {
        return forbidden(l, &w, "/exports");
    }
    let reason: String = f.reason.trim().chars().take(200).collect();
    if reason.is_empty() {
        return exports_page(
            &c,
            l,
            &w,
            Some(html! { p.error { (t(l, "reason_needed")) } }),
        );
    }
    let format = if f.format == "xlsx" { "xlsx" } else { "csv" };
    let r = store::ExportRequest {
        id: uuid::Uuid::now_v7().to_string(),
        event_id: f.event.clone(),
        format: format.into(),
        reason,
        requested_by: w.admin.clone(),
        requested_at_ms: crate::now_ms(),
        decision: None,
        decided_by: None,
        decided_at_ms: None,
        downloaded_at_ms: None,
    };
    let stored = c.db(|s| {
        s.event(&f.event)?;
        s.export_request_insert(&r)
    });
    match stored {
        Ok(()) => {
            c.audit(
                &w.admin,
                "console.export_requested",
                serde_json::json!({"request": r.id, "event": r.event_id, "format": format}),
            );
            exports_page(
                &c,
                l,
                &w,
                Some(html! { p.notice #requested { (t(l, "requested")) } }),
            )
        }
        Err(e) => exports_page(&c, l, &w, Some(html! { p.error { (e.message(l)) } })),
    }
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: String,
    id: String,
    decision: String,
}

async fn export_decide(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<DecideForm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if w.role != Role::Approver {
        return forbidden(l, &w, "/exports");
    }
    let decision = if f.decision == "approved" {
        "approved"
    } else {
        "refused"
    };
    let now = crate::now_ms();
    let outcome = c
        .db(|s| {
            Ok(match s.export_request(&f.id)? {
                Some(r) if r.requested_by == w.admin => Err(t(l, "not_your_own")),
                Some(r) if now - r.requested_at_ms > APPROVAL_WINDOW_MS => Err(t(l, "expired")),
                Some(_) => match s.export_request_decide(&f.id, decision, &w.admin, now)? {
                    true => Ok(()),
                    false => Err(t(l, "already_decided")),
                },
                None => Err(t(l, "no_such_request")),
            })
        })
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "deciding an export request failed");
            Err(t(l, "internal"))
        });
    match outcome {
        Ok(()) => {
            c.audit(
                &w.admin,
                "console.export_decided",
                serde_json::json!({"request": f.id, "decision": decision}),
            );
            exports_page(
                &c,
                l,
                &w,
                Some(html! { p.notice #decided { (t(l, decision)) } }),
            )
        }
        Err(m) => exports_page(&c, l, &w, Some(html! { p.error { (m) } })),
    }
}

#[derive(Deserialize)]
struct DownloadForm {
    csrf: String,
    id: String,
    passphrase: String,
}

async fn export_download(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<DownloadForm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = crate::now_ms();
    let request = c.db(|s| s.export_request(&f.id)).ok().flatten();
    let Some(r) = request.filter(|r| {
        r.requested_by == w.admin
            && r.decision.as_deref() == Some("approved")
            && r.downloaded_at_ms.is_none()
            && r.decided_at_ms
                .is_some_and(|d| now - d <= APPROVAL_WINDOW_MS)
    }) else {
        return exports_page(&c, l, &w, Some(html! { p.error { (t(l, "no_download")) } }));
    };
    match export_bytes(
        &c,
        &r.event_id,
        &r.format,
        Passphrase::new(f.passphrase),
        true,
    )
    .await
    {
        Ok((bytes, name, mime)) => {
            let first = c
                .db(|s| s.export_request_downloaded(&r.id, crate::now_ms()))
                .unwrap_or(false);
            if !first {
                return exports_page(&c, l, &w, Some(html! { p.error { (t(l, "no_download")) } }));
            }
            c.audit(&w.admin, "console.export_unmasked_downloaded", serde_json::json!({"request": r.id, "event": r.event_id, "approved_by": r.decided_by}));
            attachment(&name, mime, bytes)
        }
        Err(e) => exports_page(&c, l, &w, Some(html! { p.error { (e.message(l)) } })),
    }
}

// ---- deletion requests ----

async fn forget_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    forget_form(&c, l, &w, None)
}

fn forget_form(c: &Console, l: Lang, w: &Who, notice: Option<Markup>) -> Response {
    if w.role < Role::Operator {
        return forbidden(l, w, "/forget");
    }
    let events = blocking(|| admin::status(&c.dir))
        .map(|s| s.events)
        .unwrap_or_default();
    page(
        l,
        Some(w),
        "/forget",
        t(l, "nav_forget"),
        html! {
            @if let Some(n) = notice { (n) }
            p.muted { (t(l, "forget_hint")) }
            form #forget method="post" action="/forget" {
                input type="hidden" name="csrf" value=(w.csrf);
                label { (t(l, "phone_or_email")) input #forget-subject type="text" name="subject" autocomplete="off" required; }
                label { (t(l, "event")) select name="event" {
                    option value="" { (t(l, "all_events")) }
                    @for e in &events { option value=(e.id) { (e.id) } }
                } }
                // Counting the matches opens every entry: the passphrase, used in memory only.
                label { (t(l, "passphrase")) input #forget-passphrase type="password" name="passphrase" autocomplete="off" required; }
                button type="submit" { (t(l, "continue")) }
            }
        },
    )
}

#[derive(Deserialize)]
struct ForgetForm {
    csrf: String,
    subject: String,
    event: String,
    passphrase: String,
}

async fn forget_check(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<ForgetForm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if w.role < Role::Operator {
        return forbidden(l, &w, "/forget");
    }
    let subject = Zeroizing::new(f.subject);
    let s = subject.trim();
    let subject = if s.contains('@') {
        crm::Subject::Email(s.to_string())
    } else {
        crm::Subject::Phone(s.to_string())
    };
    let kind = match subject {
        crm::Subject::Email(_) => t(l, "an_email"),
        crm::Subject::Phone(_) => t(l, "a_phone"),
    };
    let event = Some(f.event).filter(|e| !e.is_empty());
    let scope = event
        .clone()
        .unwrap_or_else(|| t(l, "all_events").to_string());
    // How many entries match, before anything is deleted.
    let counted = {
        let (dir, pass, subject, event) = (
            c.dir.clone(),
            Passphrase::new(f.passphrase),
            subject.clone(),
            event.clone(),
        );
        tokio::task::spawn_blocking(move || {
            crm::count_matches(&dir, &pass, &subject, event.as_deref())
        })
        .await
        .map_err(|e| crate::HoError::Config(e.to_string()))
        .and_then(|r| r)
    };
    let n = match counted {
        Ok(n) => n,
        Err(e) => return forget_form(&c, l, &w, Some(html! { p.error { (e.message(l)) } })),
    };
    lock(&c.forgets).insert(w.id.clone(), PendingForget { subject, event });
    page(
        l,
        Some(&w),
        "/forget",
        t(l, "nav_forget"),
        html! {
            p.warning #forget-count { (t(l, "forget_confirm").replace("{kind}", kind).replace("{scope}", &scope).replace("{n}", &n.to_string())) }
            form #forget-confirm method="post" action="/forget/confirm" {
                input type="hidden" name="csrf" value=(w.csrf);
                label { (t(l, "passphrase")) input type="password" name="passphrase" autocomplete="off" required; }
                button.danger type="submit" { (t(l, "delete")) }
                " " a href="/forget" { (t(l, "cancel")) }
            }
        },
    )
}

#[derive(Deserialize)]
struct ForgetConfirm {
    csrf: String,
    passphrase: String,
}

async fn forget_confirm(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<ForgetConfirm>,
) -> Response {
    let (l, w) = match post_guard(&c, &headers, &f.csrf) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if w.role < Role::Operator {
        return forbidden(l, &w, "/forget");
    }
    let pending = lock(&c.forgets).remove(&w.id);
    let Some(p) = pending else {
        return forget_form(
            &c,
            l,
            &w,
            Some(html! { p.error { (t(l, "forget_again")) } }),
        );
    };
    let dir = c.dir.clone();
    let pass = Passphrase::new(f.passphrase);
    let done = tokio::task::spawn_blocking(move || {
        crm::forget(&dir, &pass, &p.subject, p.event.as_deref())
    })
    .await
    .map_err(|e| crate::HoError::Config(e.to_string()))
    .and_then(|r| r);
    match done {
        Ok(n) => {
            c.audit(
                &w.admin,
                "console.deletion_request",
                serde_json::json!({"deleted": n}),
            );
            forget_form(
                &c,
                l,
                &w,
                Some(
                    html! { p.notice #forgotten { (t(l, "forgotten").replace("{n}", &n.to_string())) } },
                ),
            )
        }
        Err(e) => forget_form(&c, l, &w, Some(html! { p.error { (e.message(l)) } })),
    }
}

// ---- audit ----

async fn audit(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let l = lang_of(&headers);
    let Some(w) = c.who(&headers) else {
        return to_login();
    };
    let verified = blocking(|| admin::audit_verify(&c.dir));
    let rows = c.db(|s| s.audit_tail(200));
    let rows = rows.unwrap_or_default();
    page(
        l,
        Some(&w),
        "/audit",
        t(l, "nav_audit"),
        html! {
            @match verified {
                Ok((n, None)) => p.good #chain { (t(l, "chain_ok").replace("{n}", &n.to_string())) },
                Ok((_, Some(seq))) => p.bad #chain { (t(l, "chain_broken").replace("{seq}", &seq.to_string())) },
                Err(e) => p.bad #chain { (e.message(l)) },
            }
            table #audit {
                tr { th { "#" } th { (t(l, "time")) } th { (t(l, "action")) } th { (t(l, "detail")) } }
                @for r in &rows {
                    tr { td.num { (r.seq) } td { (fmt_time(r.at_ms)) } td { code { (r.action) } } td { code { (r.detail) } } }
                }
            }
        },
    )
}

const CSS: &str = r#"
body { font-family: "Noto Sans SC", "Noto Sans CJK SC", "WenQuanYi Micro Hei", "DejaVu Sans", sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
header { display: flex; gap: 1.5em; align-items: center; background: #1d3557; color: #fff; padding: .6em 1em; flex-wrap: wrap; }
header a { color: #dfe8f5; text-decoration: none; margin-right: .9em; }
header a.active { color: #fff; font-weight: bold; border-bottom: 2px solid #fff; }
header .brand { font-weight: bold; }
header .right { margin-left: auto; }
main { padding: 1em 1.5em; }
table { border-collapse: collapse; background: #fff; margin: .5em 0 1em; }
th, td { border: 1px solid #d5d9e0; padding: .35em .6em; text-align: left; font-size: 14px; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
label { display: block; margin: .5em 0; }
label input, label select, label textarea { display: block; margin-top: .2em; }
form.inline { display: inline; }
.muted { color: #6b7280; }
.error, .bad { color: #b42318; }
.good { color: #067647; }
.notice { background: #e8f3ec; padding: .5em; }
.warning { background: #fff4e5; padding: .5em; }
.secret { background: #fff4e5; border: 2px solid #c4320a; padding: .5em 1em; }
button.danger { background: #b42318; color: #fff; border: 0; padding: .4em 1em; }
svg.chart rect { fill: #457b9d; }
svg.chart text { font-size: 11px; fill: #6b7280; }
ul.alerts li { color: #b42318; }
.kiosk { background: #fff; max-width: 40em; padding: 1em; border: 1px solid #d5d9e0; }
.kiosk .purpose { color: #6b7280; font-size: 13px; margin: .2em 0 .8em; }
.consent { border-top: 1px solid #d5d9e0; margin-top: 1em; }
code { font-size: 12px; word-break: break-all; }
"#;

/// The console's only script: fills the event form from a chosen file, and asks before a form
/// marked `data-confirm` is sent.
const JS: &str = r#"
document.addEventListener('DOMContentLoaded', function () {
  var file = document.getElementById('event-file');
  var text = document.getElementById('event-json');
  if (file && text) {
    file.addEventListener('change', function () {
      if (!file.files.length) return;
      var reader = new FileReader();
      reader.onload = function () { text.value = reader.result; };
      reader.readAsText(file.files[0]);
    });
  }
});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        let a = random_hex();
        assert_eq!(a.len(), 64);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &random_hex()));
        assert!(!same("", ""));
        assert!(!same(&a, &a[..63]));
    }

    /// A console over a fresh embedded database (kept alive by the returned directory).
    fn console() -> (Console, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::Sqlite(crate::db::open(&dir.path().join("ho.db")).unwrap());
        store.console_migrate().unwrap();
        let c = Console::with_store(
            std::path::Path::new("/nonexistent"),
            store,
            ConsoleOptions {
                silent_alert: Duration::from_secs(3600),
            },
        );
        (c, dir)
    }

    fn with_session(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{SESSION_COOKIE}={id}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_session_ends_after_15_idle_minutes_and_each_request_renews_it() {
        let (c, _dir) = console();
        let now = crate::now_ms();
        for (id, idle) in [
            ("fresh", Duration::from_secs(14 * 60)),
            ("stale", IDLE + Duration::from_secs(1)),
        ] {
            let row = store::SessionRow {
                id_sha256: key_of(id),
                admin: "alice".into(),
                role: Role::Operator,
                csrf: "t".into(),
                last_seen_ms: now - ms(idle),
            };
            c.db(|s| s.session_insert(&row, 0)).unwrap();
        }
        let stored = |id: &str| match &mut *lock(&c.store) {
            Store::Sqlite(conn) => {
                crate::store::sqlite::session_touch(conn, &key_of(id), 0, 0).unwrap()
            }
            Store::Postgres(_) => unreachable!(),
        };
        assert_eq!(c.who(&with_session("fresh")).unwrap().admin, "alice");
        assert!(stored("fresh").unwrap().last_seen_ms >= now, "renewed");
        assert!(c.who(&with_session("stale")).is_none());
        assert!(stored("stale").is_none(), "forgotten");
        assert!(c.who(&with_session("unknown")).is_none());
    }

    #[test]
    fn sign_in_attempts_are_limited_per_key() {
        let (c, _dir) = console();
        for _ in 0..MAX_FAILURES {
            assert!(c.may_try("account:bob"));
            c.failed("account:bob");
        }
        assert!(!c.may_try("account:bob"));
        assert!(c.may_try("account:alice"));
        // The window passed: allowed again, and a new failure counts from one.
        let past = crate::now_ms() - ms(ATTEMPT_WINDOW) - 1000;
        if let Store::Sqlite(conn) = &*lock(&c.store) {
            conn.execute("UPDATE console_sign_in_failures SET since_ms = ?1", [past])
                .unwrap();
        }
        assert!(c.may_try("account:bob"));
        c.failed("account:bob");
        for _ in 1..MAX_FAILURES {
            assert!(c.may_try("account:bob"));
            c.failed("account:bob");
        }
        assert!(!c.may_try("account:bob"));
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sbx_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, PRE_COOKIE), None);
    }

    #[test]
    fn every_text_key_the_pages_use_exists_in_both_languages() {
        let src = include_str!("web.rs");
        let mut keys = std::collections::BTreeSet::new();
        for part in src.split("t(l, \"").skip(1) {
            if let Some(end) = part.find('"') {
                keys.insert(&part[..end]);
            }
        }
        for (_, key) in NAV {
            keys.insert(key);
        }
        for k in [
            "viewer", "operator", "approver", "approved", "refused", "unit_s", "unit_min",
            "unit_h", "unit_d",
        ] {
            keys.insert(k);
        }
        assert!(keys.len() > 50, "{}", keys.len());
        for k in keys {
            assert!(super::super::text::has(k), "no text for {k}");
        }
    }
}
