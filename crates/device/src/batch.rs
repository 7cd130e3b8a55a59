//! Offline delivery: every entry still on the device goes into one encrypted, signed batch file
//! that a manager carries to head office; the receipt file head office writes comes back and is
//! verified and applied exactly like a sync receipt. Entries stay on the device, marked
//! exported, until then.

use crate::audit;
use crate::device::Device;
use crate::error::{DeviceError, Result};
use crate::files;
use crate::now_ms;
use crate::store::entries;
use sealbox_protocol::batch::{BatchManifest, BatchPayload, SignedBatch, BATCH_FORMAT};
use sealbox_protocol::sync::Receipt;
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use uuid::Uuid;
use zeroize::Zeroizing;

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub batch_id: Uuid,
    pub count: usize,
    pub path: String,
}

/// What applying a receipt did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceiptReport {
    pub batch_id: Uuid,
    pub erased: u64,
    /// The receipt had been applied before: nothing left to erase.
    pub already_applied: bool,
}

impl Device {
    /// Writes every entry still on the device (pending or exported before, not yet acknowledged)
    /// into one batch file at `out`: sealed envelopes and a manifest, signed with the device's
    /// key, the whole age-encrypted to head office. Written atomically (temp file in the same
    /// directory, fsync, rename); nothing in plaintext touches the disk.
    pub fn export_batch(&mut self, out: &Path) -> Result<ExportReport> {
        let entries = entries::all_envelopes(&self.conn, usize::MAX)?;
        if entries.is_empty() {
            return Err(DeviceError::NothingToExport);
        }
        // Like head office's commands: never over an existing file, never into a folder that
        // is not there (an unmounted USB stick), and nothing written when refused.
        if out.exists() {
            return Err(DeviceError::OutputExists(out.to_path_buf()));
        }
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(DeviceError::NoSuchFolder(dir.to_path_buf()));
            }
        }
        let batch_id = Uuid::now_v7();
        let now = now_ms();
        let manifest = BatchManifest {
            format: BATCH_FORMAT.into(),
            batch_id,
            device: self.device_name().to_string(),
            event_id: self.config().id.clone(),
            entry_ids: entries.iter().map(|e| e.id).collect(),
            count: entries.len(),
            created_at_ms: now,
        };
        let payload = BatchPayload { manifest, entries };
        let key = ed25519_dalek::SigningKey::from_bytes(self.signing_key()?.expose());
        let signed = SignedBatch::sign(&payload, &key);
        let plain = Zeroizing::new(
            serde_json::to_vec(&signed).map_err(|e| DeviceError::Seal(e.to_string()))?,
        );
        let sealed = self.sealer().seal(&plain)?;
        files::write_atomic(out, &sealed)?;
        crate::device::pause_point("export.after_write");
        let tx = self.conn.transaction()?;
        entries::mark_exported(&tx, &payload.manifest.entry_ids, batch_id, now)?;
        audit::append(
            &tx,
            now,
            "batch.exported",
            &json!({"batch": batch_id, "count": payload.entries.len()}),
        )?;
        tx.commit()?;
        tracing::info!(%batch_id, count = payload.entries.len(), "batch exported");
        Ok(ExportReport {
            batch_id,
            count: payload.entries.len(),
            path: out.display().to_string(),
        })
    }

    /// Applies a receipt file from head office's `import`: verified like a sync receipt (head
    /// office's signature, digest, this device), then the entries it lists that are still here
    /// are erased in one transaction, whichever batch file (or sync) carried them: a receipt
    /// signed by head office for this device says head office holds those ids. Applying it
    /// twice changes nothing.
    pub fn import_receipt(&mut self, receipt_json: &str) -> Result<ReceiptReport> {
        let receipt: Receipt = serde_json::from_str(receipt_json)
            .map_err(|_| DeviceError::BadReceipt(sealbox_protocol::sync::ReceiptError::Format))?;
        let vk = self.receipt_key(&receipt)?;
        receipt.verify(&vk).map_err(DeviceError::BadReceipt)?;
        if receipt.device != self.device_name() {
            return Err(DeviceError::BadReceipt(
                sealbox_protocol::sync::ReceiptError::OtherDevice,
            ));
        }
        let _lock = self.delivery_lock()?;
        let here = entries::present(&self.conn, &receipt.ids)?;
        if here.is_empty() {
            if entries::count_tombstoned(&self.conn, &receipt.ids)? == receipt.ids.len() {
                return Ok(ReceiptReport {
                    batch_id: receipt.batch_id,
                    erased: 0,
                    already_applied: true,
                });
            }
            return Err(DeviceError::UnknownBatch);
        }
        let erased = self.erase_acknowledged(&receipt, &here)?;
        crate::device::pause_point("receipt.after_commit");
        self.take_staff_codes(&receipt);
        Ok(ReceiptReport {
            batch_id: receipt.batch_id,
            erased,
            already_applied: false,
        })
    }
}
