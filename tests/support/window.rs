//! The kiosk window under WebDriver (`tauri-driver` + WebKitWebDriver, under Xvfb), for the
//! promoter tests and the scan benchmark.

use fantoccini::{Client, ClientBuilder};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// tauri-driver, stopped on drop.
pub struct Driver {
    child: Child,
    pub port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a window session runs: the app, its data dir, and where its own files and output go.
pub struct WindowSite<'a> {
    pub app: PathBuf,
    pub data_dir: &'a Path,
    /// XDG data, cache and config of the webview.
    pub xdg: PathBuf,
    pub tmpdir: &'a Path,
    /// What the app and its driver print.
    pub log: PathBuf,
}

/// The file the app reads its session clock's skew from (milliseconds; debug builds): a test
/// writes it to move the manager's and the promoter's inactivity locks on.
pub fn clock_skew_file(site: &WindowSite<'_>) -> PathBuf {
    site.xdg.join("clock-skew-ms")
}

/// Starts tauri-driver and a WebDriver session on the app (asked for up to 4 times: under load
/// the proxy can drop the first request).
pub async fn session(site: &WindowSite<'_>) -> (Driver, Client) {
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "the window needs a display: run with `cargo xtask test` (Xvfb)"
    );
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let (port, native) = (free_port(), free_port());
    let log = std::fs::File::create(&site.log).unwrap();
    let child = Command::new(home.join("bin/tauri-driver"))
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .args(["--native-driver", "/usr/bin/WebKitWebDriver"])
        .env("SEALBOX_DATA_DIR", site.data_dir)
        // Trace logs: nothing scanned or typed may show in them either.
        .env("SEALBOX_LOG", "trace")
        .env("XDG_DATA_HOME", site.xdg.join("data"))
        .env("XDG_CACHE_HOME", site.xdg.join("cache"))
        .env("XDG_CONFIG_HOME", site.xdg.join("config"))
        .env("TMPDIR", site.tmpdir)
        .env("SEALBOX_TEST_CLOCK_SKEW_FILE", clock_skew_file(site))
        .env("NO_AT_BRIDGE", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start tauri-driver");
    let driver = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in [port, native] {
        while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(Instant::now() < deadline, "tauri-driver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "tauri:options".into(),
        serde_json::json!({ "application": site.app }),
    );
    let mut attempt = 1;
    loop {
        match ClientBuilder::native()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) if attempt < 4 => {
                eprintln!("WebDriver session, attempt {attempt}: {e}; asking again");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                attempt += 1;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

pub async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.expect(script)
}

/// Polls a JS expression (every 5 ms) until it is true, for at most 20 s.
pub async fn wait_for(c: &Client, what: &str, expr: &str) -> Result<(), String> {
    wait_for_within(c, what, expr, Duration::from_secs(20)).await
}

/// [`wait_for`] with its own limit.
pub async fn wait_for_within(
    c: &Client,
    what: &str,
    expr: &str,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if js(c, &format!("return !!({expr});")).await == serde_json::Value::Bool(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let errors = js(c, "return JSON.stringify(window.SEALBOX_ERRORS);").await;
            return Err(format!(
                "timed out waiting for {what} ({expr}); page errors: {errors}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Keys to whatever has focus, in one WebDriver command: WebKit receives them as fast as a
/// scanner types.
pub async fn keys(c: &Client, text: &str) {
    c.active_element()
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// A scanner's burst: the text (its line breaks typed as Enter) and a final Enter.
pub async fn scan(c: &Client, text: &str) {
    let enter = char::from(fantoccini::key::Key::Enter);
    let typed: String = text
        .chars()
        .map(|ch| if ch == '\n' { enter } else { ch })
        .collect();
    keys(c, &format!("{typed}{enter}")).await;
}
