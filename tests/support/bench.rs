//! What the benchmarks share: a head office with the example event and an enrolled device with
//! entries waiting, in a temp dir under `SEALBOX_BENCH_DIR`, on the real keychain.

use sealbox_device::{Device, KeyStore, OsKeychain};
use sealbox_headoffice::{admin, Passphrase};
use std::path::{Path, PathBuf};

pub struct BenchSite {
    pub tmp: tempfile::TempDir,
    pub ho_dir: PathBuf,
    pub pass: Passphrase,
}

impl BenchSite {
    /// A head office, initialised, with the example event.
    pub fn create() -> BenchSite {
        let base = std::env::var("SEALBOX_BENCH_DIR").unwrap_or_else(|_| "target".into());
        let tmp = tempfile::tempdir_in(base).unwrap();
        let ho_dir = tmp.path().join("ho");
        let pass = Passphrase::new(crate::PASSPHRASE);
        admin::init(
            &ho_dir,
            &pass,
            &sealbox_headoffice::recovery::KitOptions::beside(&ho_dir),
            None,
        )
        .unwrap();
        let example = crate::workspace().join("examples/trade-show.json");
        admin::event_create(&ho_dir, &std::fs::read_to_string(example).unwrap()).unwrap();
        BenchSite { tmp, ho_dir, pass }
    }

    /// Enrols `bench-device` (at `url`, or the configured address) and adds `n` entries.
    pub fn device_with_entries(&self, url: Option<&str>, n: usize) -> (PathBuf, Device) {
        let enrol = self.tmp.path().join("dev.json");
        admin::enroll(&self.ho_dir, "bench-device", crate::EVENT, url, &enrol).unwrap();
        let dir = self.tmp.path().join("device");
        Device::enroll(&dir, &std::fs::read_to_string(&enrol).unwrap(), &OsKeychain)
            .expect("enrol (keyring session?)");
        let mut dev = Device::open(&dir, &OsKeychain).unwrap();
        let lines: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"name":"访客{i}","phone":"138{:08}","email":"v{i}@example.com","company":"示例","consent":true}}"#, i))
            .collect();
        dev.add_ndjson(std::io::Cursor::new(lines.join("\n")))
            .unwrap();
        (dir, dev)
    }
}

/// Leaves no keychain entry behind for the device in `dir`.
pub fn forget_key(dir: &Path) {
    if let Ok(Some(meta)) = sealbox_device::files::DataDir::new(dir).read_device_json() {
        let _ = OsKeychain.delete(&meta.keychain_service(), sealbox_device::files::KEY_ACCOUNT);
    }
}
