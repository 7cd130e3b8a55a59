//! Delivery to head office over HTTPS: a client that trusts only the CA from the enrolment file
//! (no system roots, no plain HTTP, hostname checked), and [`Device::sync`], which sends pending
//! entries in batches and erases exactly what a verified receipt acknowledges.
//!
//! A batch is recorded in the outbox before it is sent; a resend after any failure (dropped
//! connection, lost receipt, crash) sends the same batch id and entries, and head office answers
//! with the same receipt. A crash at any point leaves each entry or its tombstone.

use crate::audit;
use crate::device::{Device, Trust};
use crate::error::{DeviceError, Result};
use crate::now_ms;
use crate::store::{entries, outbox};
use sealbox_protocol::health::{HealthReport, HEALTH_FORMAT};
use sealbox_protocol::sync::{ApiError, Receipt, SyncRequest};
use sealbox_protocol::Secret32;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Entries per batch unless told otherwise.
pub const DEFAULT_PAGE: usize = 500;

/// An HTTPS client for one device's head office.
pub struct SyncClient {
    http: reqwest::blocking::Client,
    base: String,
    auth: Zeroizing<String>,
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The TLS settings for one head office (its URL and CA), made once per process and shared by
/// every [`SyncClient`] made for the same trust: so the sync loop's next round, which makes a
/// new client, resumes the session instead of repeating the full handshake (rustls resumes only
/// with the certificate verifier that checked the original handshake, so the whole config is
/// kept, not just its sessions). Sessions live in memory only (a new process starts with a full
/// handshake) and are never shared between trusts: a device re-enrolled to another head office,
/// or to a new CA, starts afresh. A session only exists after a full handshake that verified
/// head office's certificate against the pinned CA.
fn tls_for(trust: &Trust) -> Result<rustls::ClientConfig> {
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CONFIGS: OnceLock<Mutex<HashMap<[u8; 32], rustls::ClientConfig>>> = OnceLock::new();
    let mut h = Sha256::new();
    h.update(trust.server_url.as_bytes());
    h.update([0]);
    h.update(trust.ca_cert_pem.as_bytes());
    let key: [u8; 32] = h.finalize().into();
    let mut configs = CONFIGS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(config) = configs.get(&key) {
        return Ok(config.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut trust.ca_cert_pem.as_bytes()) {
        let cert = cert.map_err(|_| {
            DeviceError::Enrolment("head office's CA certificate is damaged".into())
        })?;
        roots.add(cert).map_err(|_| {
            DeviceError::Enrolment("head office's CA certificate is not usable".into())
        })?;
    }
    if roots.is_empty() {
        return Err(DeviceError::Enrolment(
            "no CA certificate from head office".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeviceError::Enrolment(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.resumption = rustls::client::Resumption::in_memory_sessions(4);
    configs.insert(key, tls.clone());
    Ok(tls)
}

impl SyncClient {
    /// A client that trusts only `trust.ca_cert_pem`, resuming the TLS session an earlier
    /// client of this process made with the same head office.
    pub fn new(trust: &Trust, token: &Secret32, timeout: Duration) -> Result<SyncClient> {
        if !trust.server_url.starts_with("https://") {
            return Err(DeviceError::TlsRefused(
                "head office's URL is not https:// (there is no plain-HTTP path)".into(),
            ));
        }
        let tls = tls_for(trust)?;
        let http = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| DeviceError::Enrolment(format!("HTTPS client: {e}")))?;
        let auth = Zeroizing::new(format!(
            "Bearer {}",
            sealbox_protocol::entry::b64_encode(token.expose())
        ));
        Ok(SyncClient {
            http,
            base: trust.server_url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// Whether head office answers.
    pub fn health(&self) -> Result<()> {
        let r = self
            .http
            .get(format!("{}/v1/health", self.base))
            .send()
            .map_err(network_error)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(http_error(r))
        }
    }

    /// Posts a health report. `Ok(false)`: this head office predates reports (404), so there is
    /// no point sending it more.
    pub fn report_health(&self, report: &HealthReport) -> Result<bool> {
        let r = self
            .http
            .post(format!(
                "{}{}",
                self.base,
                sealbox_protocol::health::HEALTH_PATH
            ))
            .header("authorization", self.auth.as_str())
            .json(report)
            .send()
            .map_err(network_error)?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !r.status().is_success() {
            return Err(http_error(r));
        }
        Ok(true)
    }

    /// The event's staff codes as head office holds them now, unverified; `None` when it has
    /// none, or predates the endpoint (404).
    pub fn staff_codes(&self) -> Result<Option<sealbox_protocol::staff::StaffCodesUpdate>> {
        let r = self
            .http
            .get(format!(
                "{}{}",
                self.base,
                sealbox_protocol::staff::STAFF_CODES_PATH
            ))
            .header("authorization", self.auth.as_str())
            .send()
            .map_err(network_error)?;
        match r.status() {
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::NO_CONTENT => return Ok(None),
            s if !s.is_success() => return Err(http_error(r)),
            _ => {}
        }
        r.json().map(Some).map_err(|e| {
            DeviceError::Offline(format!(
                "the staff codes did not arrive whole: {}",
                first_line(&e)
            ))
        })
    }

    /// Posts one batch; the receipt is returned unverified.
    pub fn post(&self, req: &SyncRequest) -> Result<Receipt> {
        let r = self
            .http
            .post(format!("{}/v1/sync", self.base))
            .header("authorization", self.auth.as_str())
            .json(req)
            .send()
            .map_err(network_error)?;
        if !r.status().is_success() {
            return Err(http_error(r));
        }
        r.json::<Receipt>().map_err(|e| {
            DeviceError::Offline(format!(
                "the receipt did not arrive whole: {}",
                first_line(&e)
            ))
        })
    }
}

fn first_line(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.join(": ").replace('\n', " ")
}

fn network_error(e: reqwest::Error) -> DeviceError {
    let detail = first_line(&e);
    let tls = [
        "invalid peer certificate",
        "UnknownIssuer",
        "NotValidForName",
        "Expired",
        "BadSignature",
        "InvalidCertificate",
    ]
    .iter()
    .any(|w| detail.contains(w));
    if tls {
        DeviceError::TlsRefused(detail)
    } else {
        DeviceError::Offline(detail)
    }
}

fn http_error(r: reqwest::blocking::Response) -> DeviceError {
    let status = r.status().as_u16();
    let retry_after_s = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let api: Option<ApiError> = r.json().ok();
    let (code, message, refused) = match api {
        Some(a) => (a.code, a.message, a.refused),
        None => ("http".to_string(), format!("HTTP {status}"), Vec::new()),
    };
    DeviceError::Server {
        status,
        code,
        message,
        refused,
        retry_after_s,
    }
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    pub batches: u64,
    /// Entries acknowledged and erased.
    pub erased: u64,
    /// Entries still waiting.
    pub pending: u64,
    /// Entries head office refused on their own, kept here quarantined.
    pub quarantined: u64,
    pub last_receipt_ms: Option<i64>,
}

/// Progress of a running sync, for a bar.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SyncProgress {
    pub erased: u64,
    pub total: u64,
}

/// How long a sync waits by itself when head office asks it to (429 with Retry-After); a
/// longer wait is reported with its length, and the kiosk's loop backs off.
const MAX_POLITE_WAIT_S: u64 = 10;

/// Posts a batch; when head office answers 429 with a short Retry-After, waits that long and
/// tries again (at most three times).
fn post_waiting_if_asked(client: &SyncClient, req: &SyncRequest) -> Result<Receipt> {
    let mut waits = 0;
    loop {
        match client.post(req) {
            Err(DeviceError::Server {
                status: 429,
                retry_after_s: Some(s),
                ..
            }) if s <= MAX_POLITE_WAIT_S && waits < 3 => {
                waits += 1;
                tracing::info!(wait_s = s, "head office asked to wait");
                std::thread::sleep(Duration::from_secs(s.max(1)));
            }
            other => return other,
        }
    }
}

/// The page cache while a sync runs (negative: KiB): the rows of the batch on the wire are
/// still cached when its receipt erases them.
const SYNC_CACHE_KIB: i64 = -4096;

/// An exclusive lock on the device's delivery (sync and receipt import), released when dropped
/// or when the process dies.
pub(crate) struct DeliveryLock(#[allow(dead_code)] std::fs::File);

impl Device {
    /// Takes the delivery lock, or says that another sync holds it.
    pub(crate) fn delivery_lock(&self) -> Result<DeliveryLock> {
        let path = self.data_dir().join("delivery.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(DeviceError::io(format!("opening {}", path.display())))?;
        match f.try_lock() {
            Ok(()) => Ok(DeliveryLock(f)),
            Err(std::fs::TryLockError::WouldBlock) => Err(DeviceError::SyncRunning),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(DeviceError::io(format!("locking {}", path.display()))(e))
            }
        }
    }

    /// A client for this device's head office.
    pub fn sync_client(&self, timeout: Duration) -> Result<SyncClient> {
        SyncClient::new(&self.trust()?, &self.token()?, timeout)
    }

    /// This device's health report: its counts, the age of its oldest waiting entry, its
    /// version and `last_error` (a stable code). Nothing a visitor typed.
    pub fn health_report(&self, last_error: Option<&str>) -> Result<HealthReport> {
        let c = self.counts()?;
        let now = now_ms();
        Ok(HealthReport {
            format: HEALTH_FORMAT.into(),
            pending: c.pending,
            exported: c.exported,
            quarantined: c.refused,
            oldest_waiting_s: c
                .oldest_waiting_ms
                .map(|t| (now.saturating_sub(t).max(0) / 1000) as u64),
            app_version: env!("CARGO_PKG_VERSION").into(),
            last_error: last_error.map(str::to_string),
            sent_at_ms: now,
        })
    }

    /// Asks head office for the event's staff codes and takes them if they are not the set held
    /// (verified like those a receipt carries); best effort: a failure is logged, and a refused
    /// update audited, changing nothing.
    pub fn fetch_staff_codes(&mut self, client: &SyncClient) {
        match client.staff_codes() {
            Ok(Some(update)) => self.take_update(&update),
            Ok(None) => {}
            Err(e) => tracing::info!(code = e.code(), "staff codes not fetched"),
        }
    }

    /// Sends this device's health report; best effort. `Ok(false)` when head office predates
    /// reports.
    pub fn send_health(&self, client: &SyncClient, last_error: Option<&str>) -> Result<bool> {
        client.report_health(&self.health_report(last_error)?)
    }

    /// Sends every entry waiting for head office in batches of at most `page`, erasing each
    /// batch once its receipt is verified, then reports the device's health (with the failure's
    /// code if the sync failed; not when head office cannot be reached at all).
    ///
    /// A refusal that lasts never blocks the device: a batch refused for its size is sent again
    /// in smaller pages; entries head office refuses on their own (it names them, or halving
    /// the batch finds them) are quarantined and the rest go on. A transient failure (network,
    /// 429, 5xx, an unverifiable receipt) stops the sync: the batches in flight are resent as
    /// they were next time, so a receipt lost on the way is answered again, not duplicated.
    pub fn sync(
        &mut self,
        client: &SyncClient,
        page: usize,
        progress: &mut dyn FnMut(SyncProgress),
    ) -> Result<SyncReport> {
        let outcome = self.sync_batches(client, page, progress);
        let code = outcome.as_ref().err().map(|e| e.code());
        // Receipts carry the event's staff codes; with none (nothing was sent), ask for them.
        if outcome.as_ref().is_ok_and(|r| r.batches == 0) {
            self.fetch_staff_codes(client);
        }
        if !matches!(code, Some("offline" | "tls_refused" | "sync_running")) {
            match self.send_health(client, code) {
                Ok(true) => tracing::debug!("health report sent"),
                Ok(false) => tracing::debug!("head office takes no health reports"),
                Err(e) => tracing::info!(code = e.code(), "health report not taken"),
            }
        }
        outcome
    }

    /// The batches go out as a pipeline of two: while one is on the wire (posted by a second
    /// thread), the receipt of the one before is verified and applied, and in the same
    /// transaction that erases it the batch after the one on the wire is recorded. Each batch is
    /// still recorded before it is sent, and only one request is on the wire at a time.
    fn sync_batches(
        &mut self,
        client: &SyncClient,
        page: usize,
        progress: &mut dyn FnMut(SyncProgress),
    ) -> Result<SyncReport> {
        // One sync (or receipt import) at a time per device: a second waits for nothing and says so.
        let _lock = self.delivery_lock()?;
        let mut report = SyncReport::default();
        // From the indexes: `counts()` reads every row, the sync reads each of them later anyway.
        let total = entries::count_sendable_all(&self.conn)?;
        progress(SyncProgress { erased: 0, total });
        let cache: i64 = self.conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = {SYNC_CACHE_KIB}"))?;
        let outcome = std::thread::scope(|scope| {
            let (to_wire, requests) = std::sync::mpsc::channel::<SyncRequest>();
            let (answer, answers) = std::sync::mpsc::channel::<Result<Receipt>>();
            scope.spawn(move || {
                for req in requests {
                    if answer.send(post_waiting_if_asked(client, &req)).is_err() {
                        break;
                    }
                }
            });
            self.pipeline(page, &to_wire, &answers, &mut report, total, progress)
        });
        // Once per sync, whatever its outcome: the erased rows' old pages leave the database
        // file and the WAL (see `truncate_wal`).
        if report.erased > 0 {
            match crate::store::truncate_wal(&self.conn) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        "the WAL could not be truncated after an erase: a reader held it"
                    )
                }
                Err(e) => tracing::warn!(code = e.code(), "the WAL was not truncated"),
            }
        }
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = {cache}"))?;
        outcome?;
        let c = self.counts()?;
        report.pending = c.pending + c.exported;
        report.quarantined = c.refused;
        tracing::info!(
            batches = report.batches,
            erased = report.erased,
            quarantined = report.quarantined,
            "sync done"
        );
        Ok(report)
    }

    /// The body of [`Device::sync_batches`]: `to_wire` posts a request, `answers` brings back
    /// each outcome in order.
    fn pipeline(
        &mut self,
        page: usize,
        to_wire: &std::sync::mpsc::Sender<SyncRequest>,
        answers: &std::sync::mpsc::Receiver<Result<Receipt>>,
        report: &mut SyncReport,
        total: u64,
        progress: &mut dyn FnMut(SyncProgress),
    ) -> Result<()> {
        let gone = || DeviceError::Offline("the sync's sending thread stopped".into());
        let mut page = page.max(1);
        // Every refusal quarantines an entry or halves the page, so this bound (far above what
        // a sync needs) only stops a head office that answers nonsense forever.
        let mut refusals_left = 4 * (total + 64);
        // The batch on the wire, and the next one: recorded and read, not yet sent.
        let mut sent: Option<outbox::Batch> = None;
        let mut ready = None;
        loop {
            if sent.is_none() {
                if ready.is_none() {
                    let tx = self.conn.transaction()?;
                    ready = next_batch(&tx, page, None)?;
                    tx.commit()?;
                }
                let Some((b, req)) = ready.take() else {
                    return Ok(());
                };
                to_wire.send(req).map_err(|_| gone())?;
                sent = Some(b);
                let tx = self.conn.transaction()?;
                ready = next_batch(&tx, page, sent.as_ref())?;
                tx.commit()?;
            }
            let answer = answers.recv().map_err(|_| gone())?;
            let Some(batch) = sent.take() else {
                return Err(gone());
            };
            let receipt = match answer {
                Ok(r) => r,
                Err(e) => {
                    // Nothing else is on the wire. The next batch was never sent: it is
                    // forgotten, so that the refusal's outcome (a smaller page, quarantined
                    // entries) shapes what goes next.
                    if let Some((b, _)) = ready.take() {
                        if !matches!(e, DeviceError::Server { .. }) {
                            // A transient failure ends the sync: both stay recorded.
                            return Err(e);
                        }
                        outbox::abandon(&self.conn, b.id)?;
                    }
                    if let Some(smaller) = self.after_refusal(&batch, e)? {
                        page = smaller;
                    }
                    refusals_left = refusals_left.checked_sub(1).ok_or_else(|| {
                        DeviceError::Offline("head office keeps refusing every batch".into())
                    })?;
                    continue;
                }
            };
            let vk = self.receipt_key(&receipt)?;
            if let Err(e) = receipt.verify_for(&vk, self.device_name(), batch.id, &batch.ids) {
                // Nothing is erased. The batch is abandoned so the next attempt goes out under a
                // new id (head office keeps the entries once and signs afresh) instead of
                // fetching the same bad receipt forever.
                outbox::abandon(&self.conn, batch.id)?;
                audit::append(
                    &self.conn,
                    now_ms(),
                    "receipt.refused",
                    &json!({"batch": batch.id, "reason": e.to_string()}),
                )?;
                tracing::warn!(batch_id = %batch.id, "receipt refused");
                return Err(DeviceError::BadReceipt(e));
            }
            // The next batch goes on the wire while this one is erased.
            if let Some((b, req)) = ready.take() {
                to_wire.send(req).map_err(|_| gone())?;
                sent = Some(b);
            }
            let now = now_ms();
            let tx = self.conn.transaction()?;
            let erased = apply_receipt(&tx, &receipt, &batch.ids, now)?;
            let next = match &sent {
                Some(on_wire) => next_batch(&tx, page, Some(on_wire))?,
                None => None,
            };
            tx.commit()?;
            ready = next;
            self.take_staff_codes(&receipt);
            report.batches += 1;
            report.erased += erased;
            report.last_receipt_ms = Some(now_ms());
            progress(SyncProgress {
                erased: report.erased,
                total,
            });
        }
    }

    /// Decides what a failed post means for the batch. Lasting refusals are dealt with here and
    /// the sync goes on (in smaller pages from now on, when a page size is returned); anything
    /// else is returned as the sync's error and the batch stays in flight for the next attempt.
    fn after_refusal(&mut self, batch: &outbox::Batch, e: DeviceError) -> Result<Option<usize>> {
        let DeviceError::Server {
            status,
            code,
            refused,
            ..
        } = &e
        else {
            return Err(e);
        };
        let now = now_ms();
        let in_batch = |id: &Uuid| batch.ids.contains(id);
        match (*status, code.as_str()) {
            // Too large: send the same entries again in smaller pages; a single entry that is
            // still too large is refused on its own.
            (413, _) => {
                outbox::abandon(&self.conn, batch.id)?;
                if batch.ids.len() > 1 {
                    let smaller = batch.ids.len() / 2;
                    tracing::warn!(batch_id = %batch.id, entries = batch.ids.len(), page = smaller, "batch too large for head office: sent again in smaller pages");
                    return Ok(Some(smaller));
                }
                self.quarantine_all(&[(batch.ids[0], code.clone())], now)?;
                Ok(None)
            }
            // Entries refused on their own: head office names them (a malformed envelope, or an
            // id it holds with other content).
            (400 | 409 | 422, _) if refused.iter().any(|r| in_batch(&r.id)) => {
                outbox::abandon(&self.conn, batch.id)?;
                let named: Vec<(Uuid, String)> = refused
                    .iter()
                    .filter(|r| in_batch(&r.id))
                    .map(|r| (r.id, r.code.clone()))
                    .collect();
                self.quarantine_all(&named, now)?;
                Ok(None)
            }
            // The batch id was used before for other entries: the entries go out under a new one.
            (409, "batch_conflict") => {
                outbox::abandon(&self.conn, batch.id)?;
                Ok(None)
            }
            // Refused without naming an entry (an older head office): halve the batch until the
            // entry that is refused stands alone, and quarantine that one.
            (400 | 409 | 422, _) => {
                outbox::abandon(&self.conn, batch.id)?;
                if batch.ids.len() > 1 {
                    return Ok(Some(batch.ids.len() / 2));
                }
                self.quarantine_all(&[(batch.ids[0], code.clone())], now)?;
                Ok(None)
            }
            // 401 (revoked or unknown), 429, 5xx and the rest: not the entries' fault.
            _ => Err(e),
        }
    }

    /// Quarantines entries head office refused on their own, audited with its reason codes.
    fn quarantine_all(&mut self, which: &[(Uuid, String)], now: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        let mut n = 0u64;
        for (id, code) in which {
            if entries::quarantine(&tx, *id, code, now)? {
                n += 1;
                audit::append(
                    &tx,
                    now,
                    "entry.quarantined",
                    &json!({"entry": id, "code": code}),
                )?;
            }
        }
        tx.commit()?;
        tracing::warn!(
            entries = n,
            "entries refused by head office on their own: quarantined"
        );
        Ok(())
    }

    /// In one transaction: erases the acknowledged entries among `sent`, leaves a tombstone for
    /// each, forgets the batch and audits it, then truncates the WAL. Call only with a verified
    /// receipt.
    pub(crate) fn erase_acknowledged(&mut self, receipt: &Receipt, sent: &[Uuid]) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let erased = apply_receipt(&tx, receipt, sent, now_ms())?;
        tx.commit()?;
        if !crate::store::truncate_wal(&self.conn)? {
            tracing::warn!("the WAL could not be truncated after an erase: a reader held it");
        }
        Ok(erased)
    }
}

/// The next batch to send and its request, inside the caller's transaction: a recorded batch
/// (oldest first) if it still fits the page, all its entries are still here to send and none is
/// in the batch `on_wire`; else a new one of the oldest entries not on the wire, recorded
/// before it is sent.
fn next_batch(
    conn: &rusqlite::Connection,
    page: usize,
    on_wire: Option<&outbox::Batch>,
) -> Result<Option<(outbox::Batch, SyncRequest)>> {
    let wire: std::collections::HashSet<Uuid> = on_wire
        .map(|b| b.ids.iter().copied().collect())
        .unwrap_or_default();
    for b in outbox::in_flight(conn)? {
        if on_wire.is_some_and(|w| w.id == b.id) {
            continue;
        }
        if !b.ids.is_empty()
            && b.ids.len() <= page
            && !b.ids.iter().any(|id| wire.contains(id))
            && entries::count_sendable(conn, &b.ids)? == b.ids.len()
        {
            let req = SyncRequest {
                batch_id: b.id,
                entries: entries::envelopes(conn, &b.ids)?,
            };
            return Ok(Some((b, req)));
        }
        // Some were erased another way (a batch file's receipt) or quarantined, or the page
        // is smaller now: start afresh. Head office takes the same entries again under the
        // new batch id without storing them twice.
        outbox::abandon(conn, b.id)?;
    }
    // After the batch on the wire. An entry that sorts before it and is not in it (a clock set
    // back) waits for the end of the pipeline, when nothing is on the wire and this starts
    // again from the first entry.
    let after = on_wire.and_then(|b| b.ids.iter().max().copied());
    // The rows are read once: their ids are recorded, their envelopes sent.
    let envelopes = entries::sendable_envelopes_after(conn, after, page)?;
    if envelopes.is_empty() {
        return Ok(None);
    }
    let ids: Vec<Uuid> = envelopes.iter().map(|e| e.id).collect();
    let batch = outbox::record(conn, &ids, now_ms())?;
    let req = SyncRequest {
        batch_id: batch.id,
        entries: envelopes,
    };
    Ok(Some((batch, req)))
}

/// Inside the caller's transaction: erases the acknowledged entries among `sent`, leaves a
/// tombstone for each, forgets the batch and audits it. Call only with a verified receipt.
fn apply_receipt(
    tx: &rusqlite::Transaction<'_>,
    receipt: &Receipt,
    sent: &[Uuid],
    now: i64,
) -> Result<u64> {
    let rid = receipt.receipt_id();
    let acknowledged: Vec<Uuid> = sent
        .iter()
        .filter(|id| receipt.ids.binary_search(id).is_ok())
        .copied()
        .collect();
    let erased = entries::erase_acknowledged(tx, &acknowledged, &rid, now)?;
    outbox::abandon(tx, receipt.batch_id)?;
    audit::append(
        tx,
        now,
        "receipt.applied",
        &json!({"batch": receipt.batch_id, "receipt": rid, "erased": erased}),
    )?;
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_plain_http_and_no_client_without_a_ca() {
        let token = Secret32::from_bytes([1u8; 32]);
        let trust = |url: &str, ca: &str| Trust {
            server_url: url.into(),
            ca_cert_pem: ca.into(),
            ho_verifying_key: String::new(),
        };
        let e = SyncClient::new(
            &trust("http://127.0.0.1:8443", "x"),
            &token,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(e.code(), "tls_refused");
        assert!(e.to_string().contains("https://"));
        let e = SyncClient::new(
            &trust("https://127.0.0.1:8443", ""),
            &token,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(e.code(), "bad_enrolment");
        // That the token never shows in Debug is tested with a client built from a real CA
        // (`tests/e2e`: the_sync_client_never_shows_its_token).
    }
}
