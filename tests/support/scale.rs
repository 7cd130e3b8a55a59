//! Head office at scale: many sealed entries made fast (sealed in parallel on every core,
//! inserted in bulk through the store, no syncs), and the peak memory of the real
//! `sealbox-headoffice` process doing something with them.

use sealbox_headoffice::keys::HoDir;
use sealbox_headoffice::store::Store;
use sealbox_protocol::entry::{validate, PayloadPlaintext};
use sealbox_protocol::EntryEnvelope;
use std::path::Path;
use std::process::{Command, Stdio};

/// The phone number of generated visitor `i`: a mainland mobile, unique per `i`.
pub fn phone_of(i: usize) -> String {
    format!("139{:08}", i)
}

/// Adds `n` entries of the example event, numbered from `first`, captured by `device`, to the
/// head office in `ho_dir` (on whichever backend its config names): each visitor with a name,
/// a phone ([`phone_of`]), an email and a company, sealed to head office's recipient on every
/// core, stored a page at a time in one transaction each.
pub fn add_entries(ho_dir: &Path, device: &str, first: usize, n: usize) {
    let ho = HoDir::new(ho_dir);
    let recipient: age::x25519::Recipient = std::fs::read_to_string(ho.recipient())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut store = Store::open(&ho).unwrap();
    let config = store.event(crate::EVENT).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let page = 20_000;
    let start_ms = sealbox_headoffice::now_ms() - 86_400_000;
    let mut done = 0;
    while done < n {
        let count = page.min(n - done);
        let from = first + done;
        let per = count.div_ceil(threads);
        let sealed: Vec<EntryEnvelope> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (recipient, config) = (&recipient, &config);
                    s.spawn(move || {
                        let lo = from + t * per;
                        let hi = (lo + per).min(from + count);
                        (lo..hi)
                            .map(|i| {
                                let values = serde_json::json!({
                                    "name": format!("访客{i}"),
                                    "phone": phone_of(i),
                                    "email": format!("v{i}@example.com"),
                                    "company": "示例",
                                    "consent": true,
                                });
                                let entry = validate(config, &values).unwrap();
                                let id = uuid::Uuid::now_v7();
                                let at = start_ms + i as i64;
                                let payload = PayloadPlaintext::new(
                                    id,
                                    &config.id,
                                    at,
                                    &config.consent,
                                    &entry,
                                );
                                let plain = serde_json::to_vec(&payload).unwrap();
                                EntryEnvelope {
                                    id,
                                    event_id: config.id.clone(),
                                    captured_at_ms: at,
                                    consent_version: payload.consent_version.clone(),
                                    consent_sha256: payload.consent_sha256.clone(),
                                    sealed: age::encrypt(recipient, &plain).unwrap(),
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        store
            .bulk_insert_entries(device, &sealed, sealbox_headoffice::now_ms())
            .unwrap();
        done += count;
    }
}

/// What a run of the real binary cost: its exit status, output, wall time and memory.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub secs: f64,
    /// The process's peak resident size: the kernel's high-water mark (`VmHWM`), read every
    /// 10 ms while it runs (the last read is at most 10 ms before it exits). Not `ru_maxrss`:
    /// Linux carries the spawning process's own high-water mark into it across `exec`.
    pub peak_rss_mb: f64,
    /// The largest resident size seen in the second half of the run (`VmRSS`, read every
    /// 10 ms): the work on the entries, after opening head office's identity, whose scrypt
    /// (64 MiB for a moment) is the whole run's peak unless the work needs more.
    pub late_rss_mb: f64,
}

/// Runs `cmd` to its end and measures it ([`Run`]).
pub fn run_measured(mut cmd: Command) -> Run {
    let t = std::time::Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut hwm = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kb = |key: &str| {
                    status
                        .lines()
                        .find(|l| l.starts_with(key))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                if let (Some(rss), Some(h)) = (kb("VmRSS:"), kb("VmHWM:")) {
                    samples.push((t.elapsed().as_secs_f64(), rss));
                    hwm = hwm.max(h);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            (samples, hwm)
        })
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut err, &mut stderr).unwrap();
    let stdout = reader.join().unwrap();
    let status = child.wait().unwrap();
    let secs = t.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (samples, hwm_kb) = sampler.join().unwrap();
    let late_kb = samples
        .iter()
        .filter(|(at, _)| *at >= secs / 2.0)
        .map(|(_, kb)| *kb)
        .max()
        .unwrap_or(0);
    Run {
        success: status.success(),
        stdout,
        stderr,
        secs,
        peak_rss_mb: hwm_kb as f64 / 1024.0,
        late_rss_mb: late_kb as f64 / 1024.0,
    }
}

/// The floor under an export or `forget` of a head office's entries: every entry read from the
/// store and opened with head office's identity, in a tight loop on every core, nothing else
/// (no parsing, no rows). Returns the seconds it took.
pub fn decrypt_floor(ho_dir: &Path, pass: &sealbox_headoffice::Passphrase) -> f64 {
    let ho = HoDir::new(ho_dir);
    let identity = ho.load_identity(pass).unwrap();
    let mut store = Store::open(&ho).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = std::time::Instant::now();
    let mut page: Vec<Vec<u8>> = Vec::with_capacity(512);
    let mut opened = 0usize;
    let mut open = |page: &mut Vec<Vec<u8>>| {
        let per = page.len().div_ceil(threads).max(1);
        opened += std::thread::scope(|s| {
            page.chunks(per)
                .map(|chunk| {
                    let identity = &identity;
                    s.spawn(move || {
                        chunk
                            .iter()
                            .filter(|sealed| age::decrypt(identity, sealed).is_ok())
                            .count()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        });
        page.clear();
    };
    store
        .for_each_entry(Some(crate::EVENT), &mut |row| {
            page.push(row.env.sealed);
            if page.len() == 512 {
                open(&mut page);
            }
            Ok(())
        })
        .unwrap();
    open(&mut page);
    let secs = t.elapsed().as_secs_f64();
    assert!(opened > 0, "nothing to open");
    secs
}
