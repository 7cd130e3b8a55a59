//! A real head office process (`sealbox-headoffice serve`) on a free port.

use crate::{bin, PASSPHRASE};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct HoServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// A `faketime -f` spec the server runs under (its clock moved), if any.
    faketime: Option<String>,
}

impl HoServer {
    /// Starts `serve` on a free port of 127.0.0.1.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> HoServer {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = dir.with_extension("serve.log");
        let (child, addr) = spawn(dir, "127.0.0.1:0", &env, &log, None);
        HoServer {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
            env,
            log,
            faketime: None,
        }
    }

    /// [`HoServer::start`] with head office's clock moved (`faketime -f SPEC`, e.g. `+400d`).
    pub fn start_faketime(dir: &Path, env: &[(&str, &str)], spec: &str) -> HoServer {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = dir.with_extension("serve.log");
        let (child, addr) = spawn(dir, "127.0.0.1:0", &env, &log, Some(spec));
        HoServer {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
            env,
            log,
            faketime: Some(spec.to_string()),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().unwrap()
    }

    /// Starts again on the same address.
    pub fn restart(&mut self) {
        self.kill();
        let (child, addr) = spawn(
            &self.dir,
            &self.addr.to_string(),
            &self.env,
            &self.log,
            self.faketime.as_deref(),
        );
        assert_eq!(addr, self.addr);
        self.child = Some(child);
    }

    /// Starts again on the same address with another environment.
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.restart();
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `serve`; a fixed address that is still held by a process just killed is tried again
/// for up to 5 seconds.
fn spawn(
    dir: &Path,
    listen: &str,
    env: &[(String, String)],
    log: &Path,
    faketime: Option<&str>,
) -> (Child, SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match try_spawn(dir, listen, env, log, faketime) {
            Ok(started) => return started,
            Err(_) if std::time::Instant::now() < deadline && !listen.ends_with(":0") => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(why) => panic!("serve did not start: {why}"),
        }
    }
}

fn try_spawn(
    dir: &Path,
    listen: &str,
    env: &[(String, String)],
    log: &Path,
    faketime: Option<&str>,
) -> Result<(Child, SocketAddr), String> {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = match faketime {
        Some(spec) => {
            // libfaketime preloaded into the server itself: the `faketime` wrapper forks and
            // waits, so killing it would leave the server running.
            let mut c = Command::new(bin("sealbox-headoffice"));
            c.env("LD_PRELOAD", crate::libfaketime())
                .env("FAKETIME", spec)
                // Timers keep the real monotonic clock; only the wall clock moves.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
            c
        }
        None => Command::new(bin("sealbox-headoffice")),
    };
    cmd.arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", listen])
        .env("SEALBOX_HO_PASSPHRASE", PASSPHRASE)
        .stdout(Stdio::piped())
        .stderr(logf);
    // Head office's database is the one its config.toml names.
    cmd.env_remove("SEALBOX_HO_DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start sealbox-headoffice serve");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut line).unwrap();
    let Some(addr) = line
        .trim()
        .rsplit("https://")
        .next()
        .and_then(|a| a.parse().ok())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{line:?} {}",
            std::fs::read_to_string(log).unwrap_or_default()
        ));
    };
    // Keep draining stdout so the server never blocks on it; its lines join the log.
    let mut out = std::fs::OpenOptions::new().append(true).open(log).ok();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            if let Some(f) = out.as_mut() {
                let _ = f.write_all(sink.as_bytes());
            }
            sink.clear();
        }
    });
    Ok((child, addr))
}

impl Drop for HoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Counts at head office straight from its database: (entries, distinct ids).
pub fn ho_counts(ho_dir: &Path) -> (u64, u64) {
    if let Some(url) = crate::pg::url_of(ho_dir) {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let r = c
            .query_one("SELECT count(*), count(DISTINCT id) FROM entries", &[])
            .unwrap();
        return (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64);
    }
    let conn = rusqlite::Connection::open(ho_dir.join("headoffice.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.query_row(
        "SELECT count(*), count(DISTINCT id) FROM entries",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .unwrap()
}

/// One number from head office's database, on whichever backend the test runs (`sql` in the
/// SQL both speak).
pub fn ho_count(ho_dir: &Path, sql: &str) -> i64 {
    if let Some(url) = crate::pg::url_of(ho_dir) {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        return c.query_one(sql, &[]).unwrap().get(0);
    }
    let conn = rusqlite::Connection::open(ho_dir.join("headoffice.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// One text column of head office's database, on whichever backend the test runs.
pub fn ho_strings(ho_dir: &Path, sql: &str) -> Vec<String> {
    if let Some(url) = crate::pg::url_of(ho_dir) {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        return c
            .query(sql, &[])
            .unwrap()
            .into_iter()
            .map(|r| r.get(0))
            .collect();
    }
    let conn = rusqlite::Connection::open(ho_dir.join("headoffice.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// Posts `req` to `server`'s `/v1/sync` as the device with `token` would: `(status, body)`.
pub fn post_sync(
    http: &reqwest::blocking::Client,
    server: &HoServer,
    token: &str,
    req: &sealbox_protocol::sync::SyncRequest,
) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{}/v1/sync", server.url()))
        .header("authorization", format!("Bearer {token}"))
        .json(req)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}
