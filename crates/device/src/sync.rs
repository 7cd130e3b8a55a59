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
use rusqlite::OptionalExtension;
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

impl SyncClient {
    /// A client that trusts only `trust.ca_cert_pem`.
    pub fn new(trust: &Trust, token: &Secret32, timeout: Duration) -> Result<SyncClient> {
        if !trust.server_url.starts_with("https://") {
            return Err(DeviceError::TlsRefused(
                "head office's URL is not https:// (there is no plain-HTTP path)".into(),
            ));
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
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DeviceError::Enrolment(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
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
    let api: Option<ApiError> = r.json().ok();
    let (code, message) = match api {
        Some(a) => (a.code, a.message),
        None => ("http".to_string(), format!("HTTP {status}")),
    };
    DeviceError::Server {
        status,
        code,
        message,
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
    pub last_receipt_ms: Option<i64>,
}

/// Progress of a running sync, for a bar.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SyncProgress {
    pub erased: u64,
    pub total: u64,
}

impl Device {
    /// A client for this device's head office.
    pub fn sync_client(&self, timeout: Duration) -> Result<SyncClient> {
        SyncClient::new(&self.trust()?, &self.token()?, timeout)
    }

    /// Sends every pending entry in batches of `page`, erasing each batch once its receipt is
    /// verified. Stops at the first failure; what was acknowledged so far stays erased and the
    /// rest stays pending (the batch in flight is resent as it was next time).
    pub fn sync(
        &mut self,
        client: &SyncClient,
        page: usize,
        progress: &mut dyn FnMut(SyncProgress),
    ) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let total = {
            let c = self.counts()?;
            c.pending + c.exported
        };
        progress(SyncProgress { erased: 0, total });
        loop {
            let Some((batch_id, ids)) = self.next_batch(page.max(1))? else {
                break;
            };
            let entries = self.envelopes_by_id(&ids)?;
            let req = SyncRequest { batch_id, entries };
            let receipt = client.post(&req)?;
            let vk = self.receipt_key(&receipt)?;
            if let Err(e) = receipt.verify_for(&vk, self.device_name(), batch_id, &ids) {
                // Nothing is erased. The batch is abandoned so the next attempt goes out under a
                // new id (head office keeps the entries once and signs afresh) instead of
                // fetching the same bad receipt forever.
                self.conn.execute(
                    "DELETE FROM outbox WHERE batch_id = ?1",
                    [batch_id.to_string()],
                )?;
                audit::append(
                    &self.conn,
                    now_ms(),
                    "receipt.refused",
                    &json!({"batch": batch_id, "reason": e.to_string()}),
                )?;
                tracing::warn!(%batch_id, "receipt refused");
                return Err(DeviceError::BadReceipt(e));
            }
            let erased = self.erase_acknowledged(&receipt, &ids)?;
            report.batches += 1;
            report.erased += erased;
            report.last_receipt_ms = Some(now_ms());
            progress(SyncProgress {
                erased: report.erased,
                total,
            });
        }
        report.pending = {
            let c = self.counts()?;
            c.pending + c.exported
        };
        tracing::info!(
            batches = report.batches,
            erased = report.erased,
            "sync done"
        );
        Ok(report)
    }

    /// The batch to send: the one in flight if its entries are all still here, else a new one
    /// of the oldest entries, recorded before it is sent.
    fn next_batch(&mut self, page: usize) -> Result<Option<(Uuid, Vec<Uuid>)>> {
        let inflight: Option<(String, String)> = self
            .conn
            .query_row("SELECT batch_id, ids FROM outbox LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((batch, ids)) = inflight {
            let ids: Vec<Uuid> = serde_json::from_str(&ids).map_err(|_| DeviceError::Corrupt)?;
            let present: i64 = {
                let mut stmt = self
                    .conn
                    .prepare_cached("SELECT count(*) FROM entries WHERE id = ?1")?;
                let mut n = 0;
                for id in &ids {
                    n += stmt.query_row([id.to_string()], |r| r.get::<_, i64>(0))?;
                }
                n
            };
            if present as usize == ids.len() && !ids.is_empty() {
                let batch = Uuid::parse_str(&batch).map_err(|_| DeviceError::Corrupt)?;
                return Ok(Some((batch, ids)));
            }
            // Some were erased another way (a batch file's receipt): start afresh.
            self.conn.execute("DELETE FROM outbox", [])?;
        }
        let ids: Vec<Uuid> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id FROM entries ORDER BY id LIMIT ?1")?;
            let rows = stmt.query_map([page as i64], |r| r.get::<_, String>(0))?;
            rows.map(|r| r.map(|s| Uuid::parse_str(&s).unwrap_or_default()))
                .collect::<rusqlite::Result<_>>()?
        };
        if ids.is_empty() {
            return Ok(None);
        }
        let batch = Uuid::now_v7();
        let ids_json = serde_json::to_string(&ids).map_err(|e| DeviceError::Seal(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO outbox (batch_id, ids, created_at_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![batch.to_string(), ids_json, now_ms()],
        )?;
        Ok(Some((batch, ids)))
    }

    fn envelopes_by_id(&self, ids: &[Uuid]) -> Result<Vec<sealbox_protocol::EntryEnvelope>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT event_id, captured_at_ms, consent_version, consent_sha256, sealed FROM entries WHERE id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let e = stmt.query_row([id.to_string()], |r| {
                Ok(sealbox_protocol::EntryEnvelope {
                    id: *id,
                    event_id: r.get(0)?,
                    captured_at_ms: r.get(1)?,
                    consent_version: r.get(2)?,
                    consent_sha256: r.get(3)?,
                    sealed: r.get(4)?,
                })
            })?;
            out.push(e);
        }
        Ok(out)
    }

    /// In one transaction: erases the acknowledged entries among `sent` (secure_delete zeroes
    /// their pages), leaves a tombstone for each, clears the outbox and audits it. Call only with
    /// a verified receipt.
    pub(crate) fn erase_acknowledged(&mut self, receipt: &Receipt, sent: &[Uuid]) -> Result<u64> {
        let now = now_ms();
        let rid = receipt.receipt_id();
        let tx = self.conn.transaction()?;
        let mut erased = 0;
        {
            let mut del = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
            let mut tomb = tx.prepare_cached(
                "INSERT OR IGNORE INTO tombstones (id, acknowledged_at_ms, receipt_id) VALUES (?1, ?2, ?3)",
            )?;
            for id in sent
                .iter()
                .filter(|id| receipt.ids.binary_search(id).is_ok())
            {
                let s = id.to_string();
                erased += del.execute([&s])? as u64;
                tomb.execute(rusqlite::params![s, now, rid])?;
            }
        }
        tx.execute(
            "DELETE FROM outbox WHERE batch_id = ?1",
            [receipt.batch_id.to_string()],
        )?;
        audit::append(
            &tx,
            now,
            "receipt.applied",
            &json!({"batch": receipt.batch_id, "receipt": rid, "erased": erased}),
        )?;
        tx.commit()?;
        Ok(erased)
    }
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
        // The token never shows in Debug.
        let pem =
            "-----BEGIN CERTIFICATE-----\nMIIBfzCCASWgAwIBAgIUPlk=\n-----END CERTIFICATE-----\n";
        if let Ok(c) = SyncClient::new(
            &trust("https://127.0.0.1:8443", pem),
            &token,
            Duration::from_secs(1),
        ) {
            assert!(!format!("{c:?}").contains("AQEB"));
        }
    }
}
