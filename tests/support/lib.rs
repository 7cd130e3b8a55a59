//! Shared helpers for the end-to-end tests: a sandbox with a head office and an enrolled device
//! in temp directories, the real binaries, and the real OS keychain.
//!
//! The tests need a Secret Service: `cargo xtask test` runs them in a private D-Bus session with
//! an unlocked gnome-keyring.

pub mod bench;
pub mod pg;
pub mod proxy;
pub mod scale;
pub mod server;
pub mod window;

use sealbox_device::files::{DataDir, KEY_ACCOUNT};
use sealbox_device::{KeyStore, OsKeychain};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSPHRASE: &str = "e2e test passphrase";
pub const PIN: &str = "246810";
pub const EVENT: &str = "trade-show-2026";

/// The directory holding the workspace's binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/e2e-… → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the binaries first)",
        p.display()
    );
    p
}

/// Fails loudly when no Secret Service can be reached, instead of testing nothing.
pub fn require_keychain() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "these tests use the real OS keychain: run them with `cargo xtask test`"
    );
}

/// A head office and a device in temp directories.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub ho: PathBuf,
    pub dev: PathBuf,
    /// TMPDIR for every process the sandbox starts, checked for leaks.
    pub tmpdir: PathBuf,
    /// Head office's PostgreSQL database, when the test runs there ([`pg::on_postgres`]).
    pub pg: Option<pg::TestDb>,
}

impl Sandbox {
    /// A head office with the example event, and nothing enrolled yet.
    pub fn headoffice() -> Sandbox {
        Sandbox::headoffice_in(pg::active().then(pg::TestDb::new), None)
    }

    /// [`Sandbox::headoffice`] with head office on the PostgreSQL database at `url`.
    pub fn headoffice_on(url: &str) -> Sandbox {
        Sandbox::headoffice_in(None, Some(url.to_string()))
    }

    fn headoffice_in(db: Option<pg::TestDb>, url: Option<String>) -> Sandbox {
        require_keychain();
        let url = url.or_else(|| db.as_ref().map(|d| d.url.clone()));
        let tmp = tempfile::tempdir().expect("tempdir");
        let sb = Sandbox {
            ho: tmp.path().join("ho"),
            dev: tmp.path().join("device"),
            tmpdir: tmp.path().join("tmp"),
            tmp,
            pg: db,
        };
        std::fs::create_dir_all(&sb.tmpdir).unwrap();
        if let Some(url) = &url {
            std::fs::create_dir_all(&sb.ho).unwrap();
            std::fs::write(sb.ho.join("config.toml"), pg::config_for(url)).unwrap();
        }
        sb.ho_ok(&["init"]);
        if let Some(url) = &url {
            assert!(pg::has_schema(url), "head office is not on its database");
        }
        let example = workspace().join("examples/trade-show.json");
        sb.ho_ok(&["event", "create", example.to_str().unwrap()]);
        sb
    }

    /// A head office and a device enrolled from it, with the manager PIN set.
    pub fn enrolled() -> Sandbox {
        let sb = Sandbox::headoffice();
        let file = sb.enrolment_file("booth-1");
        sb.dev_ok(&["enroll", file.to_str().unwrap(), "--shred"]);
        sb.dev_ok_env(&["pin", "set"], &[("SEALBOX_PIN", PIN)]);
        sb
    }

    /// Enrols this sandbox's device with head office at `url` (the server, or a proxy before
    /// it), sets the PIN, and returns the device's API token (read from the enrolment file
    /// before it is shredded).
    pub fn enrol_at(&self, url: &str) -> String {
        let file = self.tmp.path().join("device.enrol.json");
        let _ = std::fs::remove_file(&file);
        self.ho_ok(&[
            "enroll",
            "--device",
            "booth-1",
            "--event",
            EVENT,
            "--url",
            url,
            "--out",
            file.to_str().unwrap(),
        ]);
        let token =
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&file).unwrap())
                .unwrap()["device_token"]
                .as_str()
                .unwrap()
                .to_string();
        self.dev_ok(&["enroll", file.to_str().unwrap(), "--shred"]);
        self.dev_ok_env(&["pin", "set"], &[("SEALBOX_PIN", PIN)]);
        token
    }

    /// `sealbox-headoffice import BATCH --receipt-out RECEIPT`.
    pub fn ho_import(&self, batch: &Path, receipt: &Path) -> Output {
        self.ho_cmd(&[
            "import",
            batch.to_str().unwrap(),
            "--receipt-out",
            receipt.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    }

    /// Creates an event at head office: the example event with another id, changed by `edit`.
    pub fn create_event(&self, id: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut event: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(workspace().join("examples/trade-show.json")).unwrap(),
        )
        .unwrap();
        event["id"] = id.into();
        edit(&mut event);
        let file = self.tmp.path().join(format!("{id}.event.json"));
        std::fs::write(&file, event.to_string()).unwrap();
        self.ho_ok(&["event", "create", file.to_str().unwrap()]);
    }

    /// Enrols a second device, `booth-2`, for `event` in `device2/` beside the first; returns its
    /// data directory (its key is removed from the keychain when the sandbox drops).
    pub fn enrol_second(&self, event: &str) -> PathBuf {
        let dir = self.tmp.path().join("device2");
        let file = self.tmp.path().join("booth-2.enrol.json");
        self.ho_ok(&[
            "enroll",
            "--device",
            "booth-2",
            "--event",
            event,
            "--out",
            file.to_str().unwrap(),
        ]);
        ok(
            self.dev_cmd_in(&dir, &["enroll", file.to_str().unwrap(), "--shred"])
                .output()
                .unwrap(),
            &["enroll"],
        );
        dir
    }

    /// Adds `n` entries through `sealbox add --ndjson`, numbered from `from`.
    pub fn add_many(&self, from: usize, n: usize) {
        self.add_many_with(from, n, |c| c);
    }

    /// [`Sandbox::add_many`] with the device's clock moved (`faketime -f SPEC`).
    pub fn add_many_faketime(&self, from: usize, n: usize, spec: &str) {
        self.add_many_with(from, n, |c| faketime(c, spec));
    }

    fn add_many_with(&self, from: usize, n: usize, wrap: impl FnOnce(Command) -> Command) {
        let lines: Vec<String> = (from..from + n)
            .map(|i| {
                serde_json::json!({
                    "name": format!("Qzsync Visitor {i}"),
                    "phone": format!("139{:08}", i),
                    "company": "Qzsync Widgets",
                    "consent": true
                })
                .to_string()
            })
            .collect();
        self.add_lines_with(&self.dev, &lines, wrap);
    }

    /// Adds one entry per line (JSON objects) on the device in `dir` through
    /// `sealbox add --ndjson FILE`, the file removed afterwards.
    pub fn add_lines_in(&self, dir: &Path, lines: &[String]) {
        self.add_lines_with(dir, lines, |c| c);
    }

    fn add_lines_with(&self, dir: &Path, lines: &[String], wrap: impl FnOnce(Command) -> Command) {
        let file = self
            .tmp
            .path()
            .join(format!("entries-{}.ndjson", uuid::Uuid::now_v7()));
        std::fs::write(&file, lines.join("\n")).unwrap();
        let args = ["add", "--ndjson", file.to_str().unwrap()];
        ok(wrap(self.dev_cmd_in(dir, &args)).output().unwrap(), &args);
        std::fs::remove_file(&file).unwrap();
    }

    /// A head office command with its clock moved (`faketime -f SPEC`, e.g. `+400d`).
    pub fn ho_ok_faketime(&self, args: &[&str], spec: &str) -> String {
        ok(faketime(self.ho_cmd(args), spec).output().unwrap(), args)
    }

    pub fn enrolment_file(&self, device: &str) -> PathBuf {
        let file = self.tmp.path().join(format!("{device}.enrol.json"));
        self.ho_ok(&[
            "enroll",
            "--device",
            device,
            "--event",
            EVENT,
            "--out",
            file.to_str().unwrap(),
        ]);
        file
    }

    pub fn ho_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("sealbox-headoffice"));
        c.arg("--data-dir")
            .arg(&self.ho)
            .args(args)
            .env("SEALBOX_HO_PASSPHRASE", PASSPHRASE)
            .env("TMPDIR", &self.tmpdir)
            .env_remove("SEALBOX_LOG")
            .env_remove("SEALBOX_LANG")
            .env("LANG", "C.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES");
        // Head office's database is the one its config.toml names.
        c.env_remove("SEALBOX_HO_DATABASE_URL");
        c
    }

    pub fn dev_cmd(&self, args: &[&str]) -> Command {
        self.dev_cmd_in(&self.dev, args)
    }

    pub fn dev_cmd_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin("sealbox"));
        c.arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("TMPDIR", &self.tmpdir)
            .env_remove("SEALBOX_PIN")
            .env_remove("SEALBOX_LOG")
            .env_remove("SEALBOX_LANG")
            .env("LANG", "C.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES");
        c
    }

    /// `sealbox add --json -` in `dir` with `entry` on stdin: a visitor's values are never
    /// arguments.
    pub fn add_in(&self, dir: &Path, entry: &str, env: &[(&str, &str)]) -> Output {
        let mut c = self.dev_cmd_in(dir, &["add", "--json", "-"]);
        for (k, v) in env {
            c.env(k, v);
        }
        with_stdin(c, entry)
    }

    /// Adds one entry (through stdin); returns its id line.
    pub fn add(&self, entry: &str) -> String {
        ok(self.add_in(&self.dev, entry, &[]), &["add", "--json", "-"])
    }

    /// Adds one entry that must be refused; returns stderr.
    pub fn add_fail(&self, entry: &str, env: &[(&str, &str)]) -> String {
        fail(self.add_in(&self.dev, entry, env), &["add", "--json", "-"])
    }

    pub fn ho_ok(&self, args: &[&str]) -> String {
        ok(self.ho_cmd(args).output().unwrap(), args)
    }

    pub fn dev_ok(&self, args: &[&str]) -> String {
        ok(self.dev_cmd(args).output().unwrap(), args)
    }

    pub fn dev_ok_in(&self, dir: &Path, args: &[&str]) -> String {
        ok(self.dev_cmd_in(dir, args).output().unwrap(), args)
    }

    pub fn dev_ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut c = self.dev_cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        ok(c.output().unwrap(), args)
    }

    /// Runs a device command that must fail; returns its stderr.
    pub fn dev_fail(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut c = self.dev_cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        fail(c.output().unwrap(), args)
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.dev_cmd(&["status", "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout).expect("status --json")
    }

    pub fn pending(&self) -> u64 {
        self.status()["pending"].as_u64().expect("pending count")
    }

    /// Up to `n` of the device's entries waiting, as it would send them.
    pub fn pending_envelopes(&self, n: usize) -> Vec<sealbox_protocol::EntryEnvelope> {
        sealbox_device::Device::open(&self.dev, &OsKeychain)
            .unwrap()
            .pending_envelopes(n)
            .unwrap()
    }

    pub fn device_json(&self) -> sealbox_device::files::DeviceJson {
        DataDir::new(&self.dev)
            .read_device_json()
            .unwrap()
            .expect("enrolled")
    }

    pub fn keychain_service(&self) -> String {
        self.device_json().keychain_service()
    }

    /// Head office's age identity, opened with the passphrase.
    pub fn ho_identity(&self) -> age::x25519::Identity {
        sealbox_headoffice::keys::HoDir::new(&self.ho)
            .load_identity(&sealbox_headoffice::Passphrase::new(PASSPHRASE))
            .unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Leave no key behind in the test keyring.
        for dir in [&self.dev, &self.tmp.path().join("device2")] {
            if let Ok(Some(m)) = DataDir::new(dir).read_device_json() {
                let _ = OsKeychain.delete(&m.keychain_service(), KEY_ACCOUNT);
            }
        }
    }
}

/// Debian's multi-threaded libfaketime (package `faketime`, which xtask installs).
pub fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketimeMT.so.1 (Debian's faketime package) under /usr/lib/*/faketime")
}

/// The same command run under `faketime -f SPEC`: its wall clock moved, its monotonic clock not.
pub fn faketime(cmd: Command, spec: &str) -> Command {
    let mut c = Command::new("faketime");
    c.args(["-f", spec])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `cmd` with `input` on its stdin; collects its output.
pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a command");
    // A command that exits early (refused) closes its stdin: ignore the broken pipe.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    child.wait_with_output().expect("wait for a command")
}

pub fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts exit code 1 and a single-line `error: …` (`错误：…` in Chinese) on stderr; returns
/// stderr.
pub fn fail(out: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} should fail with exit 1; stderr: {stderr}"
    );
    assert!(
        stderr.starts_with("error: ") || stderr.starts_with("错误："),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

/// Every file below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The files under `dir` that contain `needle` (as UTF-8 bytes).
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// SHA-256 of a file, to prove it was not touched.
pub fn file_digest(p: &Path) -> String {
    sealbox_protocol::sha256_hex(&std::fs::read(p).unwrap())
}

/// A small deterministic PRNG (xorshift64*), seeded per test and printed, so a failing run can be
/// replayed.
pub struct Rng(u64);

impl Rng {
    pub fn from_time() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        let seed = std::env::var("SEALBOX_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(seed);
        eprintln!("random seed: {seed} (replay with SEALBOX_TEST_SEED={seed})");
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Waits until process `pid` is blocked reading its standard input in any of its threads, which
/// means it has read everything written to the pipe so far (a read with data waiting does not
/// block). Replaces guessing with a sleep.
pub fn wait_blocked_on_stdin(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        let reading = tasks.iter().any(|t| {
            let call = std::fs::read_to_string(t.join("syscall")).unwrap_or_default();
            let stat = std::fs::read_to_string(t.join("stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            call.starts_with("0 0x0 ") && state.starts_with('S')
        });
        if reading {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} never waited on its standard input"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// An HTTPS client that trusts only the head office CA in `ho_dir`, keeps no idle connection
/// and follows no redirect.
pub fn ho_client(ho_dir: &Path) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(ho_dir.join("ca.pem")).unwrap()).unwrap();
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Points the device in `dir` at another head office address, as an admin re-enrolling through a
/// proxy would (the URL lives in the encrypted store).
pub fn repoint_device(dir: &Path, url: &str) {
    let dev = sealbox_device::Device::open(dir, &sealbox_device::OsKeychain).unwrap();
    dev.connection()
        .execute(
            "UPDATE settings SET v = ?1 WHERE k = 'server_url'",
            [url.as_bytes()],
        )
        .unwrap();
}
