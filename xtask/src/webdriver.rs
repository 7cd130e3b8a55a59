//! The few W3C WebDriver calls the package test makes on the installed kiosk, over plain HTTP to
//! tauri-driver (which proxies them to WebKitWebDriver). The end-to-end tests use fantoccini; the
//! package test is part of xtask, which stays small to build, so it speaks the protocol itself:
//! JSON over HTTP/1.1, one connection per call. No `Connection: close`: tauri-driver passes the
//! request's headers on to WebKitWebDriver, which then reset its connection now and then (seen as
//! an empty answer mid-session); the answer is read by its length instead.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// W3C's key for an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Session {
    port: u16,
    id: String,
}

/// One HTTP request to 127.0.0.1:`port`; the JSON response's `value`, or the WebDriver error.
fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("WebDriver answered {status:?}"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            raw.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        raw.resize(n, 0);
        r.read_exact(&mut raw)?;
    } else {
        r.read_to_end(&mut raw)?;
    }
    let v: Value = serde_json::from_slice(&raw).with_context(|| {
        format!(
            "WebDriver's answer is not JSON: {}",
            String::from_utf8_lossy(&raw)
        )
    })?;
    if code >= 400 || v["value"].get("error").is_some() {
        bail!(
            "WebDriver {method} {path}: {} {}",
            v["value"]["error"].as_str().unwrap_or("error"),
            v["value"]["message"].as_str().unwrap_or("")
        );
    }
    Ok(v["value"].clone())
}

impl Session {
    /// A session on `application` (tauri-driver starts it through WebKitWebDriver). Asked for up
    /// to 4 times, as in the end-to-end tests: under load the proxy can drop the first request.
    pub fn new(port: u16, application: &str) -> Result<Session> {
        let caps = json!({ "tauri:options": { "application": application } });
        let body = json!({ "capabilities": { "alwaysMatch": caps } });
        let mut attempt = 1;
        loop {
            match call(port, "POST", "/session", Some(&body)) {
                Ok(v) => {
                    let id = v["sessionId"]
                        .as_str()
                        .context("no sessionId in WebDriver's answer")?
                        .to_string();
                    return Ok(Session { port, id });
                }
                Err(e) if attempt < 4 => {
                    eprintln!("WebDriver session, attempt {attempt}: {e:#}; asking again");
                    std::thread::sleep(Duration::from_millis(500 * attempt));
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e.context(format!("no WebDriver session after {attempt} attempts")))
                }
            }
        }
    }

    fn post(&self, path: &str, body: Value) -> Result<Value> {
        call(
            self.port,
            "POST",
            &format!("/session/{}{path}", self.id),
            Some(&body),
        )
    }

    /// Runs `script` in the page (`return …` gives the value).
    pub fn js(&self, script: &str) -> Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Runs `script` in the page; it calls `arguments[arguments.length - 1]` with the value.
    pub fn js_async(&self, script: &str) -> Result<Value> {
        self.post("/execute/async", json!({ "script": script, "args": [] }))
    }

    /// Polls a JS expression until it is true (20 s).
    pub fn wait_for(&self, what: &str, expr: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.js(&format!("return !!({expr});"))? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let screen = self
                    .js("return document.body.dataset.screen + ' | ' + (document.getElementById('status-text') || {}).textContent;")
                    .unwrap_or_default();
                bail!("the installed kiosk: timed out waiting for {what} ({expr}); the screen: {screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> Result<String> {
        let v = self.post("/element", json!({ "using": "css selector", "value": css }))?;
        Ok(v[ELEMENT]
            .as_str()
            .with_context(|| format!("no element for {css}"))?
            .to_string())
    }

    /// Clears an input and types `text` into it, key by key, as a person would.
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.element(css)?;
        self.post(&format!("/element/{e}/clear"), json!({}))?;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))?;
        Ok(())
    }

    pub fn click(&self, css: &str) -> Result<()> {
        let e = self.element(css)?;
        self.post(&format!("/element/{e}/click"), json!({}))?;
        Ok(())
    }

    /// What the window shows, as PNG bytes.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let v = call(
            self.port,
            "GET",
            &format!("/session/{}/screenshot", self.id),
            None,
        )?;
        base64_decode(v.as_str().context("screenshot")?)
    }

    /// Ends the session (tauri-driver closes the app).
    pub fn close(self) -> Result<()> {
        call(self.port, "DELETE", &format!("/session/{}", self.id), None).map(drop)
    }
}

/// Standard base64, as WebDriver sends screenshots.
fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => bail!("not base64"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
