//! The data directory's layout, atomic writes and shredding.
//!
//! ```text
//! DIR/device.json   public facts: store id, device, event, key id (never the key)
//! DIR/sealbox.db    the SQLCipher database (+ -wal, -shm)
//! DIR/escrow.age    the database key sealed to head office
//! DIR/summary-escrow.age  the summary key sealed to head office (for a forgotten PIN)
//! DIR/enrolling     only while `enroll` runs: the store id whose keychain entry it is making,
//!                   so the next `enroll` removes what a killed one left
//! DIR/logs/         the CLI's log: ids and counts only
//! ```

use crate::error::{DeviceError, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEVICE_FORMAT: &str = "sealbox-device/1";

/// Paths inside one device's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn device_json(&self) -> PathBuf {
        self.root.join("device.json")
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("sealbox.db")
    }
    pub fn escrow(&self) -> PathBuf {
        self.root.join("escrow.age")
    }
    /// The summary key sealed to head office (made with the first PIN).
    pub fn summary_escrow(&self) -> PathBuf {
        self.root.join("summary-escrow.age")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The marker of an enrolment in progress (holds the store id, nothing secret).
    pub fn enrolment_marker(&self) -> PathBuf {
        self.root.join("enrolling")
    }

    /// Creates the directory, readable by its owner only.
    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.root).map_err(DeviceError::io("creating the data directory"))?;
        restrict(&self.root, 0o700)
    }

    pub fn read_device_json(&self) -> Result<Option<DeviceJson>> {
        let path = self.device_json();
        match fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|_| DeviceError::DeviceJsonDamaged(path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DeviceError::io("reading device.json")(e)),
        }
    }
}

/// The public facts of an enrolled device, beside its database. Nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceJson {
    pub format: String,
    /// Random id of this store; names the keychain entry.
    pub store_id: String,
    pub device_name: String,
    pub event_id: String,
    /// A check value of the database key (not the key): tells a wrong key from a corrupt file.
    pub key_id: String,
    pub enrolled_at_ms: i64,
    /// The database file's salt (its first 16 bytes, hex; not secret). A file that does not
    /// open with the right key is another database (wrong key) when its salt differs, and
    /// damaged (corrupt) when it is the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_salt: Option<String>,
}

impl DeviceJson {
    pub fn keychain_service(&self) -> String {
        keychain_service(&self.store_id)
    }
}

/// The keychain service name of the store `store_id`.
pub fn keychain_service(store_id: &str) -> String {
    format!("sealbox.device.{store_id}")
}

/// The first 16 bytes of a database file, hex: SQLCipher's salt, stored in the clear.
pub fn db_salt(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    fs::File::open(path).ok()?.read_exact(&mut b).ok()?;
    Some(hex::encode(b))
}

/// The keychain account of the database key.
pub const KEY_ACCOUNT: &str = "database-key";

#[cfg(unix)]
pub(crate) fn restrict(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(DeviceError::io("setting permissions"))
}

#[cfg(not(unix))]
pub(crate) fn restrict(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

/// Writes `data` to `path` atomically: a temp file in the same directory, fsync, rename, fsync
/// of the directory. Readers see the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".sealbox-tmp-")
        .tempfile_in(dir)
        .map_err(DeviceError::io("creating a temp file"))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(DeviceError::io("writing a temp file"))?;
    // The temp file was created readable by its owner only. Saying so again fails on file
    // systems that cannot hold a mode (FAT and exFAT USB sticks refuse with EPERM): what this
    // writes there is sealed and signed anyway, so that refusal must not fail the write.
    if let Err(e) = restrict(tmp.path(), 0o600) {
        tracing::debug!(error = %e, "the destination keeps no file mode");
    }
    tmp.persist(path)
        .map_err(|e| DeviceError::io(format!("replacing {}", path.display()))(e.error))?;
    sync_dir(dir);
    Ok(())
}

/// fsyncs a directory so a rename or unlink in it is durable (best effort where unsupported).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Overwrites a file with zeros, syncs, and removes it. On copy-on-write or flash storage the
/// old blocks may survive the overwrite; the removal is what is guaranteed.
pub fn shred(path: &Path) -> Result<()> {
    let len = fs::metadata(path)
        .map_err(DeviceError::io(format!("reading {}", path.display())))?
        .len();
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(DeviceError::io(format!(
                "opening {} to shred it",
                path.display()
            )))?;
        let zeros = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])
                .map_err(DeviceError::io("overwriting"))?;
            left -= n as u64;
        }
        f.sync_all().map_err(DeviceError::io("syncing"))?;
    }
    fs::remove_file(path).map_err(DeviceError::io(format!("removing {}", path.display())))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}
