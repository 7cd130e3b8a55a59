//! Store benchmark: `add` through the library (validation, sealing, durable commit) beside the
//! same schema and row size on plain SQLite and on SQLCipher without sealing, in the same run;
//! and opening the database with the raw key beside a PBKDF2 passphrase.
//!
//! Run by `cargo xtask bench` inside a keyring session; writes JSON to `SEALBOX_BENCH_OUT`.

use sealbox_device::store::{self, Keying};
use sealbox_device::{Device, OsKeychain};
use sealbox_protocol::entry::b64_encode;
use sealbox_protocol::Secret32;
use std::time::Instant;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Stats {
    p50: f64,
    p99: f64,
    per_s: f64,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    let total: f64 = ms.iter().sum();
    ms.sort_by(|a, b| a.total_cmp(b));
    Stats {
        p50: percentile(&ms, 0.5),
        p99: percentile(&ms, 0.99),
        per_s: ms.len() as f64 / (total / 1000.0),
    }
}

fn enrolment() -> String {
    let id = age::x25519::Identity::generate();
    let vk = ed25519_verifying();
    serde_json::json!({
        "format": "sealbox-enrolment/1",
        "server_url": "https://127.0.0.1:8443",
        "ca_cert_pem": "-----BEGIN CERTIFICATE-----\nbench\n-----END CERTIFICATE-----\n",
        "ho_recipient": id.to_public().to_string(),
        "ho_verifying_key": vk,
        "event": serde_json::from_str::<serde_json::Value>(include_str!("../../../examples/trade-show.json")).unwrap(),
        "device_name": "bench",
        "device_token": b64_encode(&[1u8; 32]),
        "device_signing_key": b64_encode(&[2u8; 32]),
    })
    .to_string()
}

fn ed25519_verifying() -> String {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    b64_encode(sk.verifying_key().as_bytes())
}

fn sample(i: usize) -> serde_json::Value {
    serde_json::json!({
        "name": format!("访客{i}"),
        "phone": format!("138{:08}", i % 100_000_000),
        "email": format!("visitor{i}@example.com"),
        "company": "示例科技有限公司",
        "interest": "sensors",
        "consent": true
    })
}

/// A database of the entries schema, keyed as given, taking one-row commits of `blob`-sized
/// rows. With `cpu_only` the disk is taken out (`synchronous=OFF`, no checkpoints), so what
/// remains is the work in the process, and the WAL's size tells how many pages commits wrote.
struct Rig {
    conn: rusqlite::Connection,
    wal: std::path::PathBuf,
    sealed: Vec<u8>,
    i: i64,
}

impl Rig {
    fn new(
        dir: &std::path::Path,
        name: &str,
        keying: Keying<'_>,
        blob: usize,
        cpu_only: bool,
    ) -> Rig {
        let path = dir.join(name);
        let mut conn = store::open(&path, keying, true).unwrap();
        store::migrate(&mut conn).unwrap();
        if cpu_only {
            conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA wal_autocheckpoint = 0;")
                .unwrap();
        }
        Rig {
            conn,
            wal: dir.join(format!("{name}-wal")),
            sealed: vec![0x5au8; blob],
            i: 0,
        }
    }

    /// One durable one-row commit; its time in ms.
    fn commit(&mut self) -> f64 {
        self.i += 1;
        let t = Instant::now();
        let tx = self.conn.transaction().unwrap();
        tx.prepare_cached(
            "INSERT INTO entries (id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, summary)
             VALUES (?1, 'e', ?2, 'v', 'h', ?3, '{\"name\":\"访*\"}')",
        )
        .unwrap()
        .execute(rusqlite::params![uuid::Uuid::now_v7().to_string(), self.i, self.sealed])
        .unwrap();
        tx.commit().unwrap();
        t.elapsed().as_secs_f64() * 1000.0
    }

    fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0)
    }
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("SEALBOX_BENCH_QUICK").is_some();
    let n = if quick { 300 } else { 3000 };
    let tmp = tempfile::tempdir_in(
        std::env::var("SEALBOX_BENCH_DIR").unwrap_or_else(|_| "target".into()),
    )
    .unwrap();
    let dev_dir = tmp.path().join("device");
    Device::enroll(&dev_dir, &enrolment(), &OsKeychain)
        .expect("enrol (is a Secret Service running? use cargo xtask bench)");
    let mut dev = Device::open(&dev_dir, &OsKeychain).unwrap();
    // A device in use has a PIN, and so a summary key that each summary is sealed to.
    dev.set_pin(None, &sealbox_device::pin::Pin::new("246810"))
        .unwrap();

    // Warm up, and learn the sealed size for the baselines.
    for i in 0..20 {
        dev.add(&sample(i)).unwrap();
    }
    let blob = dev.pending_envelopes(1).unwrap()[0].sealed.len();

    // Interleave the three commit by commit, in a rotating order, so the disk's moods (its
    // fsync time drifts by tens of percent over a run) hit them alike. New files every round
    // keep the databases the same size on both sides.
    let key = Secret32::from_bytes([9u8; 32]);
    let (mut submit, mut plain, mut cipher) = (Vec::new(), Vec::new(), Vec::new());
    let rounds = 10;
    for r in 0..rounds {
        let mut p = Rig::new(
            tmp.path(),
            &format!("plain{r}.db"),
            Keying::None,
            blob,
            false,
        );
        let mut c = Rig::new(
            tmp.path(),
            &format!("cipher{r}.db"),
            Keying::Raw(&key),
            blob,
            false,
        );
        for i in 0..n / rounds {
            for k in 0..3 {
                match (i + k) % 3 {
                    0 => {
                        let v = sample(r * n + i);
                        let t = Instant::now();
                        dev.add(&v).unwrap();
                        submit.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    1 => plain.push(p.commit()),
                    _ => cipher.push(c.commit()),
                }
            }
        }
    }
    // The same commits without the disk: SQLCipher's own cost per commit, and per page written.
    let (mut plain_cpu, mut cipher_cpu) = (Vec::new(), Vec::new());
    let mut p = Rig::new(tmp.path(), "plain-cpu.db", Keying::None, blob, true);
    let mut c = Rig::new(tmp.path(), "cipher-cpu.db", Keying::Raw(&key), blob, true);
    for _ in 0..n {
        plain_cpu.push(p.commit());
        cipher_cpu.push(c.commit());
    }
    // A WAL frame is a 24-byte header and a 4 KiB page; the file starts with a 32-byte header.
    let frames_per_commit = c.wal_bytes().saturating_sub(32) as f64 / (4096.0 + 24.0) / n as f64;
    drop((p, c));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let cipher_cpu_us = (mean(&cipher_cpu) - mean(&plain_cpu)) * 1000.0;
    let (s, p, c) = (stats(submit), stats(plain), stats(cipher));

    // Opening: the raw key skips key derivation; a passphrase runs PBKDF2 (256,000 rounds).
    let open_raw = median_ms(21, || {
        let conn = store::open(&tmp.path().join("cipher0.db"), Keying::Raw(&key), false).unwrap();
        drop(conn);
    });
    {
        let mut conn = store::open(
            &tmp.path().join("pbkdf2.db"),
            Keying::Passphrase("bench passphrase"),
            true,
        )
        .unwrap();
        store::migrate(&mut conn).unwrap();
    }
    let open_pbkdf2 = median_ms(if quick { 3 } else { 7 }, || {
        let conn = store::open(
            &tmp.path().join("pbkdf2.db"),
            Keying::Passphrase("bench passphrase"),
            false,
        )
        .unwrap();
        drop(conn);
    });
    let open_device = median_ms(11, || {
        drop(Device::open(&dev_dir, &OsKeychain).unwrap());
    });

    let out = serde_json::json!({
        "entries": n,
        "sealed_bytes": blob,
        "submit_p50_ms": s.p50,
        "submit_p99_ms": s.p99,
        "submit_per_s": s.per_s,
        "plain_commit_p50_ms": p.p50,
        "plain_commit_p99_ms": p.p99,
        "plain_commits_per_s": p.per_s,
        "sqlcipher_commit_p50_ms": c.p50,
        "sqlcipher_commit_p99_ms": c.p99,
        "sqlcipher_commits_per_s": c.per_s,
        "submit_vs_plain_commit_ratio": s.p50 / p.p50,
        "sqlcipher_vs_plain_ratio": p.per_s / c.per_s,
        "sqlcipher_vs_plain_p50_ratio": c.p50 / p.p50,
        "sqlcipher_cpu_overhead_us_per_commit": cipher_cpu_us,
        "plain_cpu_us_per_commit": mean(&plain_cpu) * 1000.0,
        "wal_pages_per_commit": frames_per_commit,
        "sqlcipher_us_per_page": cipher_cpu_us / frames_per_commit,
        "open_raw_key_ms": open_raw,
        "open_pbkdf2_ms": open_pbkdf2,
        "open_device_with_keychain_ms": open_device,
    });
    // Leave no keychain entry behind.
    if let Ok(Some(meta)) = sealbox_device::files::DataDir::new(&dev_dir).read_device_json() {
        use sealbox_device::KeyStore;
        let _ = OsKeychain.delete(&meta.keychain_service(), sealbox_device::files::KEY_ACCOUNT);
    }
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{text}");
    if let Ok(path) = std::env::var("SEALBOX_BENCH_OUT") {
        std::fs::write(path, text).unwrap();
    }
}
