//! The sync server: axum over rustls. Devices post sealed entries with their token; head office
//! stores them durably (insert-or-ignore by id) and only then answers with a signed receipt.
//!
//! [`serve`] takes a listener and a shutdown future, so tests run it on port 0.

use crate::config::Config;
use crate::db::{self, DeviceAuth, IngestError};
use crate::error::{HoError, Result};
use crate::keys::HoDir;
use crate::store::Authenticated;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ed25519_dalek::SigningKey;
use sealbox_protocol::sync::{ApiError, RefusedEntry, SyncRequest};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits a server enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_entries_per_batch: usize,
    /// Largest sealed payload of one entry.
    pub max_sealed_bytes: usize,
    pub device_rate_per_s: f64,
    pub device_burst: f64,
}

impl Limits {
    pub fn from_config(c: &Config) -> Limits {
        Limits {
            max_body_bytes: c.max_body_bytes,
            max_entries_per_batch: c.max_entries_per_batch,
            max_sealed_bytes: sealbox_protocol::limits::MAX_SEALED_BYTES,
            device_rate_per_s: c.device_rate_per_s,
            device_burst: c.device_burst,
        }
    }
}

/// One batch waiting for the writer, and where its outcome goes.
struct Job {
    device: String,
    /// The device's event: its receipt carries the event's signed staff codes.
    event: String,
    req: SyncRequest,
    reply: tokio::sync::oneshot::Sender<db::Ingested>,
}

/// The most batches and entries one group commit takes; the rest wait for the next.
const GROUP_MAX_BATCHES: usize = 512;
const GROUP_MAX_ENTRIES: usize = 20_000;

/// The writer: one thread owning the write connection. It takes every batch that is waiting
/// and stores them with one group commit, so concurrent devices share an fsync instead of
/// queueing for one each; while it commits, the next group gathers. No batch waits for a timer.
fn writer_loop(mut store: Store, key: SigningKey, jobs: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        let mut entries = group[0].req.entries.len();
        while group.len() < GROUP_MAX_BATCHES && entries < GROUP_MAX_ENTRIES {
            match jobs.try_recv() {
                Ok(job) => {
                    entries += job.req.entries.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let batches: Vec<(&str, &SyncRequest)> =
            group.iter().map(|j| (j.device.as_str(), &j.req)).collect();
        let results = store.ingest_group(&batches, db::Source::Sync, &key, crate::now_ms());
        tracing::debug!(batches = group.len(), entries, "group commit");
        let mut updates = HashMap::new();
        for (job, mut result) in group.into_iter().zip(results) {
            if let Ok(stored) = result.as_mut() {
                let update = updates.entry(job.event.clone()).or_insert_with(|| {
                    crate::admin::staff_codes_update(&mut store, &job.event, &key)
                });
                stored.receipt.staff_codes = update.clone();
            }
            // A device that hung up meanwhile gets its receipt on its retry (same batch id).
            let _ = job.reply.send(result);
        }
    }
}

/// Work for the reader's connection; it sends its outcome back itself.
type ReadJob = Box<dyn FnOnce(&mut Store) + Send>;

/// A reader: one of [`readers`] threads, each owning a connection of its own, taking the
/// next job from the shared queue: token lookups (with the rate limit's upsert on PostgreSQL),
/// staff codes and health reports.
fn reader_loop(mut store: Store, jobs: std::sync::Arc<Mutex<std::sync::mpsc::Receiver<ReadJob>>>) {
    loop {
        let job = {
            let queue = jobs.lock().unwrap_or_else(|e| e.into_inner());
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        job(&mut store);
    }
}

/// A request's token waiting to be looked up, and where the answer goes.
struct AuthJob {
    token_sha256: String,
    reply: tokio::sync::oneshot::Sender<Result<Authenticated>>,
}

/// The most tokens one lookup takes; the rest wait for the next.
const AUTH_GROUP_MAX: usize = 512;

/// The token checker: one thread owning a connection of its own, looking up every token
/// waiting in one go (with the shared rate limit's upsert on PostgreSQL), so that hundreds of
/// devices arriving at once cost a few round trips to the database instead of two each. No
/// token waits for a timer: while one lookup runs, the next group gathers.
fn auth_loop(mut store: Store, limits: (f64, f64), jobs: std::sync::mpsc::Receiver<AuthJob>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < AUTH_GROUP_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let hashes: Vec<String> = group.iter().map(|j| j.token_sha256.clone()).collect();
        match store.authenticate_many(&hashes, limits.0, limits.1) {
            Ok(found) => {
                for (job, f) in group.into_iter().zip(found) {
                    let _ = job.reply.send(Ok(f));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in group {
                    let _ = job.reply.send(Err(HoError::Database(msg.clone())));
                }
            }
        }
    }
}

/// How many reader threads (and connections) a server keeps. On PostgreSQL every lookup and
/// rate-limit upsert is a round trip to the database, and hundreds of devices syncing at once
/// queue behind one connection; the embedded database answers in microseconds in process.
fn readers(store: &Store) -> usize {
    match store.backend() {
        "postgres" => 4,
        _ => 2,
    }
}

/// What the handlers share.
pub struct ServerState {
    /// The queue to the writer thread (SQLite has one writer at a time anyway).
    writer: std::sync::mpsc::Sender<Job>,
    /// Token lookups (and the shared rate limit), grouped on their own connection and thread.
    auth: std::sync::mpsc::Sender<AuthJob>,
    /// Staff codes and health reports, on the readers' connections and threads beside the
    /// writer (the PostgreSQL client blocks, so it never runs on the async runtime's
    /// threads).
    reader: std::sync::mpsc::Sender<ReadJob>,
    limits: Limits,
    /// The per-device token buckets on the embedded database (one server); on PostgreSQL the
    /// buckets are rows in the database, shared by every server on it, and these are used only
    /// while the database does not answer.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Bounds the request bodies being read at once ([`MAX_BODIES_IN_FLIGHT`]).
    bodies: tokio::sync::Semaphore,
    /// Head office's unlocked keys: receipts go out with its key rotation statements.
    keys: HoDir,
    /// The receipt key, which also signs staff code updates answered from the reader.
    staff_key: std::sync::Arc<SigningKey>,
}

impl ServerState {
    pub fn open(dir: &HoDir, config: &Config) -> Result<ServerState> {
        dir.require_initialised()?;
        let busy = Duration::from_millis(config.busy_timeout_ms);
        let store = Store::open_configured(dir, config, busy)?;
        let key = dir.load_signing_key()?;
        let (writer, jobs) = std::sync::mpsc::channel();
        // Ends when the state (the last sender) is dropped.
        std::thread::Builder::new()
            .name("sealbox-ho-writer".into())
            .spawn(move || writer_loop(store, key, jobs))
            .map_err(HoError::io("starting the writer thread"))?;
        let mut read = Store::open_configured(dir, config, busy)?;
        // Health reports are kept in the console's tables.
        read.console_migrate()?;
        let (reader, jobs) = std::sync::mpsc::channel();
        let jobs = std::sync::Arc::new(Mutex::new(jobs));
        let more = readers(&read) - 1;
        let mut stores = vec![read];
        for _ in 0..more {
            stores.push(Store::open_configured(dir, config, busy)?);
        }
        let (auth, auth_jobs) = std::sync::mpsc::channel();
        let auth_store = Store::open_configured(dir, config, busy)?;
        let limits = (config.device_rate_per_s, config.device_burst);
        std::thread::Builder::new()
            .name("sealbox-ho-auth".into())
            .spawn(move || auth_loop(auth_store, limits, auth_jobs))
            .map_err(HoError::io("starting the token checker"))?;
        for (i, store) in stores.into_iter().enumerate() {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("sealbox-ho-reader-{i}"))
                .spawn(move || reader_loop(store, jobs))
                .map_err(HoError::io("starting a reader thread"))?;
        }
        Ok(ServerState {
            writer,
            auth,
            reader,
            limits: Limits::from_config(config),
            buckets: Mutex::new(HashMap::new()),
            bodies: tokio::sync::Semaphore::new(MAX_BODIES_IN_FLIGHT),
            keys: dir.clone(),
            staff_key: std::sync::Arc::new(dir.load_signing_key()?),
        })
    }

    /// Runs `f` on the reader's connection and thread.
    async fn on_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |s| {
            let _ = reply.send(f(s));
        });
        let stopped = || HoError::Config("the reader stopped".into());
        match self.reader.send(job) {
            Ok(()) => outcome.await.unwrap_or_else(|_| Err(stopped())),
            Err(_) => Err(stopped()),
        }
    }

    /// Token bucket per device, in this server's memory: `Err(seconds to wait)` when empty.
    fn take(&self, device: &str) -> std::result::Result<(), u64> {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, at) = b
            .entry(device.to_string())
            .or_insert((self.limits.device_burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.limits.device_rate_per_s)
            .min(self.limits.device_burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.limits.device_rate_per_s)
                .ceil()
                .max(1.0) as u64)
        }
    }
}

/// A refused request: its status, stable code and message, and the entries refused on their
/// own; becomes the JSON error response.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) refused: Vec<RefusedEntry>,
    /// Seconds the device should wait (`Retry-After`), when rate-limited.
    pub(crate) retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            refused: Vec::new(),
            retry_after: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::warn!(
            status = self.status.as_u16(),
            code = self.code,
            refused_entries = self.refused.len(),
            "request refused"
        );
        let mut body = ApiError::new(self.code, self.message);
        body.refused = self.refused;
        let mut r = (self.status, Json(body)).into_response();
        if let Some(v) = self
            .retry_after
            .and_then(|w| HeaderValue::from_str(&w.to_string()).ok())
        {
            r.headers_mut().insert("retry-after", v);
        }
        r
    }
}

/// The JSON error response. Every refusal leaves a line in the log: the status and the code,
/// never anything from the request.
fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    if status.is_client_error() {
        tracing::warn!(status = status.as_u16(), code, "request refused");
    }
    (status, Json(ApiError::new(code, message))).into_response()
}

/// The `/v1` routes.
pub fn router(state: Arc<ServerState>) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route(
            "/v1/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/sync", post(sync))
        .route(sealbox_protocol::staff::STAFF_CODES_PATH, get(staff_codes))
        .route(
            sealbox_protocol::health::HEALTH_PATH,
            post(health_report).layer(DefaultBodyLimit::max(
                sealbox_protocol::health::MAX_HEALTH_BYTES,
            )),
        )
        .layer(DefaultBodyLimit::max(limit))
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
}

/// A device's event's staff codes, signed (204 while it has none): how a device with nothing
/// to send, and so no receipt, learns a code issued or revoked since.
async fn staff_codes(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let device = match authenticate(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    if let Err(wait) = state.take(&device.name) {
        let mut r = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this device",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }
    let key = state.staff_key.clone();
    let event = device.event_id.clone();
    let found = state
        .on_reader(move |s| Ok(crate::admin::staff_codes_update(s, &event, &key)))
        .await;
    match found {
        Ok(Some(update)) => Json(update).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "head office is shutting down; try again",
        ),
    }
}

/// The device behind the request's bearer token.
async fn authenticate(
    state: &ServerState,
    headers: &HeaderMap,
) -> std::result::Result<DeviceAuth, Refusal> {
    let unauthorized = || {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked device",
        )
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(sealbox_protocol::entry::b64_decode)
        .filter(|t| t.len() == 32)
        .ok_or_else(unauthorized)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = AuthJob {
        token_sha256: sealbox_protocol::sha256_hex(&token),
        reply,
    };
    // One trip to the token checker, grouped with every other request waiting.
    let stopped = || HoError::Config("the token checker stopped".into());
    let found = match state.auth.send(job) {
        Ok(()) => answer.await.unwrap_or_else(|_| Err(stopped())),
        Err(_) => Err(stopped()),
    };
    match found {
        Ok(Some((d, taken))) if !d.revoked => match taken.unwrap_or_else(|| state.take(&d.name)) {
            Ok(()) => Ok(d),
            Err(wait) => Err(rate_limited(wait)),
        },
        Ok(_) => Err(unauthorized()),
        Err(e) => {
            tracing::error!(error = %e, "device lookup failed");
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "try again later",
            ))
        }
    }
}

/// The answer to a device over its rate limit.
fn rate_limited(wait: u64) -> Refusal {
    let mut r = Refusal::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests from this device",
    );
    r.retry_after = Some(wait);
    r
}

/// Checks a batch against the limits before anything is stored. The batch as a whole may be
/// refused (empty, too many entries, an id twice); entries that break an envelope limit are
/// named, each with its reason, so the device quarantines exactly those and sends the rest.
pub(crate) fn validate(
    req: &SyncRequest,
    device: &DeviceAuth,
    limits: &Limits,
) -> std::result::Result<(), Refusal> {
    let bad = |m: &str| Err(Refusal::new(StatusCode::BAD_REQUEST, "bad_request", m));
    if req.entries.is_empty() {
        return bad("a batch needs at least one entry");
    }
    if req.entries.len() > limits.max_entries_per_batch {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_entries",
            format!("at most {} entries per batch", limits.max_entries_per_batch),
        ));
    }
    let mut ids = HashSet::with_capacity(req.entries.len());
    let mut refused = Vec::new();
    for e in &req.entries {
        if !ids.insert(e.id) {
            return bad("an entry id appears twice in the batch");
        }
        if let Err(p) = sealbox_protocol::limits::check_envelope(e, &device.event_id) {
            refused.push((e.id, p));
        }
    }
    if let Some((_, first)) = refused.first() {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            code: first.code(),
            message: format!(
                "{} entries refused ({first}); the others would be taken without them",
                refused.len()
            ),
            refused: refused
                .iter()
                .map(|(id, p)| RefusedEntry {
                    id: *id,
                    code: p.code().into(),
                })
                .collect(),
            retry_after: None,
        });
    }
    Ok(())
}

/// How many request bodies are read at once. Only authenticated devices get this far; the rest
/// wait their turn with nothing buffered, so a crowd of devices cannot grow memory without
/// bound either.
pub const MAX_BODIES_IN_FLIGHT: usize = 64;

async fn sync(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // The token first, from the headers alone: an unauthenticated request is answered before a
    // byte of its body is read.
    let device = match authenticate(&state, &headers).await {
        Ok(d) => d,
        Err(r) => {
            tracing::warn!(code = r.code, "sync refused before reading the body");
            return r.into_response();
        }
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.limits.max_body_bytes as u64) {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is too large",
        );
    }
    let body = {
        let Ok(_permit) = state.bodies.acquire().await else {
            return api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "head office is shutting down; try again",
            );
        };
        match axum::body::to_bytes(body, state.limits.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return api_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "the request body is too large",
                );
            }
        }
    };
    let req: SyncRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body is not a sync request",
            );
        }
    };
    drop(body);
    if let Err(r) = validate(&req, &device, &state.limits) {
        return r.into_response();
    }
    let (batch, n) = (req.batch_id, req.entries.len());
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let job = Job {
        device: device.name.clone(),
        event: device.event_id.clone(),
        req,
        reply,
    };
    let outcome = match state.writer.send(job) {
        Ok(()) => outcome.await,
        Err(_) => {
            return api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "head office is shutting down; try again",
            )
        }
    };
    match outcome {
        Ok(Ok(stored)) => {
            tracing::info!(device = %device.name, %batch, entries = n, duplicate = !stored.fresh, "batch stored");
            Json(state.keys.with_rotations(stored.receipt)).into_response()
        }
        Ok(Err(IngestError::Conflict(ids))) => {
            tracing::warn!(device = %device.name, conflicts = ids.len(), "entries already held with other content: refused");
            Refusal {
                status: StatusCode::CONFLICT,
                code: "conflict",
                message: format!(
                    "{} entries are already held with different content; nothing was stored",
                    ids.len()
                ),
                refused: ids
                    .into_iter()
                    .map(|id| RefusedEntry {
                        id,
                        code: "conflict".into(),
                    })
                    .collect(),
                retry_after: None,
            }
            .into_response()
        }
        Ok(Err(IngestError::BatchConflict)) => {
            tracing::warn!(device = %device.name, "batch id reused for other entries");
            api_error(
                StatusCode::CONFLICT,
                "batch_conflict",
                "this batch id was already used for other entries",
            )
        }
        Ok(Err(IngestError::Busy(e))) => {
            tracing::warn!(device = %device.name, error = %e, "the database stayed busy");
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "head office is busy; try again",
            )
        }
        Ok(Err(IngestError::Database(e))) => {
            tracing::error!(device = %device.name, error = %e, "storing a batch failed");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "storing the batch failed; nothing was stored",
            )
        }
        Ok(Err(IngestError::Storage(e))) => {
            tracing::error!(device = %device.name, error = %e, "storing a batch failed");
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) {
                api_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "head office is busy; try again",
                )
            } else {
                api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "storing the batch failed; nothing was stored",
                )
            }
        }
        Err(_) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "storing the batch failed; nothing was stored",
        ),
    }
}

/// A device's health report (see [`sealbox_protocol::health`]): authenticated and rate-limited
/// like a sync; head office keeps the last one and when it saw it.
async fn health_report(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let device = match authenticate(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let report: sealbox_protocol::health::HealthReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body is not a health report",
            )
        }
    };
    if let Err(e) = report.validate() {
        return api_error(StatusCode::BAD_REQUEST, e.code(), e.to_string());
    }
    let name = device.name.clone();
    let pending = report.pending;
    let stored = state
        .on_reader(move |s| s.record_health(&name, &report, crate::now_ms()))
        .await;
    match stored {
        Ok(()) => {
            tracing::debug!(device = %device.name, pending, "health report");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            tracing::error!(device = %device.name, error = %e, "storing a health report failed");
            api_error(StatusCode::SERVICE_UNAVAILABLE, "busy", "try again later")
        }
    }
}

/// How many TLS 1.3 session tickets head office sends after each handshake, in one flight
/// (one TLS record) right after the client's Finished and before any response. One is enough:
/// a device uses its ticket for its next connection, which brings it a fresh one.
pub const TLS13_TICKETS: usize = 1;

/// rustls config from PEM certificate chain and key: TLS 1.2/1.3 with ring, HTTP/1.1, and
/// resumption with stateless session tickets, so a device's next sync skips the certificate
/// and its signature (a resumed TLS 1.3 handshake still makes a fresh ECDHE key: forward
/// secrecy holds). The ticket key lives in this process's memory only and rotates every six
/// hours; another head office server behind the same name does not know it, so a device that
/// moves to it makes one full handshake there.
pub fn tls_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| HoError::Config(format!("server certificate: {e}")))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| HoError::Config(format!("server key: {e}")))?
        .ok_or_else(|| HoError::Config("server key: no private key in the file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HoError::Crypto(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| HoError::Config(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| HoError::Crypto(e.to_string()))?;
    config.send_tls13_tickets = TLS13_TICKETS;
    Ok(config)
}

/// Loads the TLS config from the configured (or default) certificate and key files. The
/// default key is `init`'s, encrypted at rest: `dir` must be unlocked. A configured `tls_key`
/// is read as it is (a key the admin manages).
pub fn load_tls(dir: &HoDir, config: &Config) -> Result<rustls::ServerConfig> {
    let cert = config
        .tls_cert
        .as_ref()
        .map(|s| dir.root().join(s))
        .unwrap_or(dir.server_cert());
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(HoError::io(format!("reading {}", p.display())))
    };
    let key = match &config.tls_key {
        Some(k) => zeroize::Zeroizing::new(read(&dir.root().join(k))?),
        None => dir.load_server_key_pem()?,
    };
    tls_config(&read(&cert)?, &key)
}

/// How many connections the kernel queues before head office accepts them. The default that
/// `std` asks for (128) is exceeded when a few hundred devices connect at the same moment: the
/// kernel then drops their SYNs and each waits a full second to retry.
pub const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`] (the kernel caps it at `somaxconn`).
/// Like `std::net::TcpListener::bind`: each address `addr` resolves to is tried in turn, and the
/// last error is returned if none can be bound.
pub fn bind(addr: impl std::net::ToSocketAddrs) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        let bound = Socket::new(Domain::for_address(a), Type::STREAM, None).and_then(|socket| {
            socket.set_reuse_address(true)?;
            socket.bind(&a.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            Ok(socket)
        });
        match bound {
            Ok(socket) => return Ok(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// Serves on `listener` until `shutdown` resolves, then lets requests in flight finish (at
/// most 10 s).
pub async fn serve(
    listener: std::net::TcpListener,
    tls: rustls::ServerConfig,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    axum_server::from_tcp_rustls(listener, config)
        .handle(handle)
        .serve(router(state).into_make_service())
        .await
}
