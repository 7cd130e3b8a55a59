//! Delivery over real TLS on 127.0.0.1 to a real head office process: nothing lost, nothing
//! duplicated, nothing erased without a verified receipt.

use sealbox_device::{Device, OsKeychain};
use sealbox_tests::proxy::{Fault, FaultProxy};
use sealbox_tests::server::{ho_counts, HoServer};
use sealbox_tests::*;
use std::time::{Duration, Instant};

fn tombstones(sb: &Sandbox) -> u64 {
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    dev.counts().unwrap().erased
}

fn sync(sb: &Sandbox, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["sync"];
    args.extend_from_slice(extra);
    sb.dev_cmd(&args).output().unwrap()
}

#[test]
fn round_trip_1000_entries_erased_on_a_verified_receipt() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 1000);
    assert_eq!(sb.pending(), 1000);
    let out = sb.dev_ok(&["sync", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["erased"], 1000);
    assert_eq!(report["pending"], 0);
    assert_eq!(ho_counts(&sb.ho), (1000, 1000));
    let st: serde_json::Value = serde_json::from_str(&sb.ho_ok(&["status", "--json"])).unwrap();
    assert_eq!(st["events"][0]["entries"], 1000);
    assert_eq!(st["devices"][0]["entries"], 1000);

    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    let c = dev.counts().unwrap();
    assert_eq!((c.pending, c.exported, c.erased), (0, 0, 1000));
    let conn = dev.connection();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "no payload is left in the device's database");
    let sd: i64 = conn
        .query_row("PRAGMA secure_delete", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sd, 1, "freed pages are zeroed");
    assert!(dev.audit_verify().unwrap().ok());
    assert!(dev
        .audit_recent(10)
        .unwrap()
        .iter()
        .any(|r| r.action == "receipt.applied"));
    drop(dev);
    for canary in ["Qzsync", "13900000001"] {
        assert!(files_containing(&sb.dev, canary).is_empty());
        assert!(
            files_containing(&sb.ho, canary).is_empty(),
            "head office stores entries sealed"
        );
        assert!(!server.log().contains(canary));
    }
    // A second sync has nothing to do.
    assert!(sb.dev_ok(&["sync"]).contains("nothing to send"));
}

#[test]
fn every_network_fault_loses_nothing_and_duplicates_nothing() {
    let sb = Sandbox::headoffice();
    // A short write timeout at head office so a held lock turns into a quick 503.
    let server = HoServer::start(&sb.ho, &[("SEALBOX_HO_BUSY_TIMEOUT_MS", "300")]);
    let proxy = FaultProxy::start(server.addr);
    sb.enrol_at(&proxy.url());
    let mut total = 0;
    let faults = [
        ("dropped before the request", Fault::DropBeforeRequest),
        ("dropped after head office committed", Fault::DropResponse),
        (
            "receipt later than the client's timeout",
            Fault::DelayResponse(Duration::from_secs(4)),
        ),
        ("truncated response", Fault::TruncateResponse(40)),
    ];
    for (what, fault) in faults {
        sb.add_many(total, 30);
        total += 30;
        let held_before = ho_counts(&sb.ho).0;
        proxy.next(fault);
        let out = sync(&sb, &["--timeout", "2", "--page", "10"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: the sync must fail: {err}"
        );
        // Every one of these is the same thing to a manager: head office was not reached, or
        // its answer never arrived whole; the entries stay.
        assert!(
            err.contains("head office cannot be reached")
                && err.contains("the entries stay on this device and will be sent later"),
            "{what}: {err}"
        );
        if matches!(fault, Fault::DelayResponse(_)) {
            assert!(err.contains("timed out"), "{what}: {err}");
        }
        assert_eq!(sb.pending(), 30, "{what}: nothing erased without a receipt");
        if fault != Fault::DropBeforeRequest {
            // Head office committed the first batch although the device never saw the receipt.
            assert_eq!(ho_counts(&sb.ho).0, held_before + 10, "{what}");
        } else {
            assert_eq!(ho_counts(&sb.ho).0, held_before, "{what}");
        }
        // The network is back: the same batch is resent, answered with the same receipt.
        sb.dev_ok(&["sync", "--timeout", "10", "--page", "10"]);
        assert_eq!(sb.pending(), 0, "{what}");
        assert_eq!(
            ho_counts(&sb.ho),
            (total as u64, total as u64),
            "{what}: each entry exactly once"
        );
    }
    // Head office busy (a writer holds the database): 503, nothing erased, then fine.
    sb.add_many(total, 20);
    total += 20;
    {
        let lock = rusqlite::Connection::open(sb.ho.join("headoffice.db")).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        let out = sync(&sb, &["--timeout", "5"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("HTTP 503") && err.contains("busy"), "{err}");
        lock.execute_batch("ROLLBACK").unwrap();
    }
    assert_eq!(sb.pending(), 20);
    sb.dev_ok(&["sync"]);
    assert_eq!(sb.pending(), 0);
    assert_eq!(ho_counts(&sb.ho), (total as u64, total as u64));
    assert_eq!(tombstones(&sb), total as u64);
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    assert!(dev.audit_verify().unwrap().ok());
}

/// A sync keeps two batches recorded: the one on the wire and the next, read while the first
/// is answered. When the first one's receipt is lost, the sync stops with both recorded, and
/// the next sync sends exactly those two again, in their order (head office answers the first
/// with the receipt it signed already), then the rest: each entry stored and erased once.
#[test]
fn first_receipt_lost_while_the_next_batch_waits() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    let proxy = FaultProxy::start(server.addr);
    sb.enrol_at(&proxy.url());
    sb.add_many(0, 25);
    proxy.next(Fault::DropResponse);
    let out = sync(&sb, &["--timeout", "5", "--page", "10"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the sync must fail: {err}");
    assert_eq!(sb.pending(), 25, "nothing erased without a receipt");
    assert_eq!(
        ho_counts(&sb.ho).0,
        10,
        "head office committed the first batch"
    );
    let recorded: Vec<(String, Vec<uuid::Uuid>)> = {
        let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let mut stmt = dev
            .connection()
            .prepare("SELECT batch_id, ids FROM outbox ORDER BY rowid")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(b, ids)| (b, serde_json::from_str(&ids).unwrap()))
            .collect();
        rows
    };
    assert_eq!(
        recorded.len(),
        2,
        "the batch on the wire and the next: {recorded:?}"
    );
    assert_eq!((recorded[0].1.len(), recorded[1].1.len()), (10, 10));
    assert!(
        recorded[0].1.iter().all(|id| !recorded[1].1.contains(id)),
        "no entry is in both"
    );

    let out = sb.dev_ok(&["sync", "--json", "--timeout", "10", "--page", "10"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["erased"].as_u64(), report["batches"].as_u64()),
        (Some(25), Some(3)),
        "{out}"
    );
    assert_eq!(sb.pending(), 0);
    assert_eq!(ho_counts(&sb.ho), (25, 25), "each entry stored once");
    assert_eq!(tombstones(&sb), 25);
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    let mut applied: Vec<String> = dev
        .audit_recent(100)
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "receipt.applied")
        .map(|r| r.detail["batch"].as_str().unwrap_or_default().to_string())
        .collect();
    applied.reverse();
    assert_eq!(applied.len(), 3, "{applied:?}");
    assert_eq!(
        (&applied[0], &applied[1]),
        (&recorded[0].0, &recorded[1].0),
        "the recorded batches went out again under their own ids, in order"
    );
    assert!(dev.audit_verify().unwrap().ok());
}

#[test]
fn server_killed_mid_batch_and_device_killed_between_receipt_and_erase() {
    let sb = Sandbox::headoffice();
    let mut server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 400);

    // Head office killed while a sync of many small batches is running, then back: killed as
    // soon as it holds part of the entries, and again (with more entries) until the kill
    // landed mid-sync: the sync failed, head office held some, the device still had some.
    let mut total = 400u64;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let before = ho_counts(&sb.ho).0;
        let child = sb
            .dev_cmd(&["sync", "--page", "5", "--timeout", "3"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while ho_counts(&sb.ho).0 == before && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(2));
        }
        server.kill();
        let out = child.wait_with_output().unwrap();
        server.restart();
        let held = ho_counts(&sb.ho).0;
        eprintln!(
            "attempt {attempts}: sync during the server's death exited {:?}; head office held {held} of {total}",
            out.status.code()
        );
        if !out.status.success() && held > before && sb.pending() > 0 {
            break;
        }
        assert!(
            attempts < 5,
            "the kill never landed in the middle of a sync"
        );
        sb.add_many(total as usize, 400);
        total += 400;
    }

    // The device killed at random moments during syncs of small batches.
    let mut rng = Rng::from_time();
    let mut gap_seen = 0;
    let mut kills = 0;
    // At least 40 kills, and on until one landed between head office's commit and the
    // device's erase (at most 200).
    while kills < 40 || (gap_seen == 0 && kills < 200) {
        kills += 1;
        let mut child = sb
            .dev_cmd(&["sync", "--page", "3"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(150_000)));
        let _ = child.kill();
        let _ = child.wait();
        // Head office holds entries the device has not erased yet: killed between receipt and
        // erase (or with the receipt in flight).
        if ho_counts(&sb.ho).0 > tombstones(&sb) {
            gap_seen += 1;
        }
    }
    eprintln!("device killed {kills} times; {gap_seen} times head office held entries the device had not erased yet");
    assert!(
        gap_seen > 0,
        "no kill landed between head office's commit and the device's erase"
    );
    sb.dev_ok(&["sync"]);
    assert_eq!(sb.pending(), 0);
    assert_eq!(
        ho_counts(&sb.ho),
        (total, total),
        "every entry at head office exactly once"
    );
    assert_eq!(tombstones(&sb), total);
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    assert!(dev.integrity_ok().unwrap());
    assert!(dev.audit_verify().unwrap().ok());
    // SIGTERM stops head office gracefully.
    assert!(server.terminate().success());
}

/// A stand-in head office on head office's own TLS certificate that answers every sync with
/// the receipt `make` builds.
pub(crate) fn fake_head_office(
    sb: &Sandbox,
    make: impl Fn(&sealbox_protocol::sync::SyncRequest) -> sealbox_protocol::sync::Receipt
        + Send
        + Sync
        + 'static,
) -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    use axum::routing::post;
    let ho = sealbox_headoffice::keys::HoDir::new(&sb.ho)
        .unlock(&sealbox_headoffice::Passphrase::new(PASSPHRASE))
        .unwrap();
    let tls = sealbox_headoffice::server::tls_config(
        &std::fs::read_to_string(ho.server_cert()).unwrap(),
        &ho.load_server_key_pem().unwrap(),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let make = std::sync::Arc::new(make);
    let app = axum::Router::new().route(
        "/v1/sync",
        post(move |body: axum::body::Bytes| {
            let make = make.clone();
            async move {
                let req: sealbox_protocol::sync::SyncRequest =
                    serde_json::from_slice(&body).unwrap();
                axum::Json(make(&req))
            }
        }),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(async move {
        let config = axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(tls));
        let _ = axum_server::from_tcp_rustls(listener, config)
            .serve(app.into_make_service())
            .await;
    });
    (addr, rt)
}

#[test]
fn untrusted_servers_and_bad_receipts_erase_nothing() {
    use sealbox_protocol::sync::Receipt;
    let sb = Sandbox::headoffice();
    let ho = sealbox_headoffice::keys::HoDir::new(&sb.ho)
        .unlock(&sealbox_headoffice::Passphrase::new(PASSPHRASE))
        .unwrap();
    let now = time::OffsetDateTime::now_utc();

    // Another head office's server: a CA the device does not trust.
    let other = tempfile::tempdir().unwrap();
    let other_ho = other.path().join("ho");
    let init = std::process::Command::new(bin("sealbox-headoffice"))
        .arg("--data-dir")
        .arg(&other_ho)
        .arg("init")
        .env("SEALBOX_HO_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert!(init.status.success());
    let stranger = HoServer::start(&other_ho, &[]);
    sb.enrol_at(&stranger.url());
    sb.add_many(0, 5);
    let check = |what: &str, expect: &str| {
        let out = sync(&sb, &["--timeout", "5"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(expect), "{what}: expected {expect:?} in {err}");
        assert_eq!(sb.pending(), 5, "{what}: nothing erased");
    };
    check("unknown CA", "not head office's");
    let out = sync(&sb, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("UnknownIssuer"));

    // Our CA, but a certificate for another name.
    let (cert, key) = sealbox_headoffice::keys::issue_server_cert(
        &ho,
        &["other.example"],
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    )
    .unwrap();
    std::fs::write(sb.ho.join("wrong-name.pem"), cert).unwrap();
    std::fs::write(sb.ho.join("wrong-name.key"), key.as_str()).unwrap();
    let wrong = HoServer::start(
        &sb.ho,
        &[
            ("SEALBOX_HO_TLS_CERT", "wrong-name.pem"),
            ("SEALBOX_HO_TLS_KEY", "wrong-name.key"),
        ],
    );
    repoint_device(&sb.dev, &wrong.url());
    check("wrong hostname", "not valid for name");
    drop(wrong);

    // Our CA and name, but expired.
    let (cert, key) = sealbox_headoffice::keys::issue_server_cert(
        &ho,
        &["127.0.0.1"],
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    std::fs::write(sb.ho.join("expired.pem"), cert).unwrap();
    std::fs::write(sb.ho.join("expired.key"), key.as_str()).unwrap();
    let expired = HoServer::start(
        &sb.ho,
        &[
            ("SEALBOX_HO_TLS_CERT", "expired.pem"),
            ("SEALBOX_HO_TLS_KEY", "expired.key"),
        ],
    );
    repoint_device(&sb.dev, &expired.url());
    check("expired certificate", "expired");
    drop(expired);

    // A receipt signed by a key that is not head office's.
    let (addr, _rt) = fake_head_office(&sb, |req| {
        let forger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        Receipt::sign(
            req.batch_id,
            "booth-1",
            req.entries.iter().map(|e| e.id).collect(),
            1,
            &forger,
        )
    });
    repoint_device(&sb.dev, &format!("https://{addr}"));
    check("forged receipt", "not head office's");
    // A receipt from head office's own key that leaves one entry out.
    let key = ho.load_signing_key().unwrap();
    let (addr, _rt2) = fake_head_office(&sb, move |req| {
        let ids = req.entries.iter().skip(1).map(|e| e.id).collect();
        Receipt::sign(req.batch_id, "booth-1", ids, 1, &key)
    });
    repoint_device(&sb.dev, &format!("https://{addr}"));
    check("receipt with a missing id", "does not list every entry");
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    assert_eq!(dev.counts().unwrap().erased, 0);
    assert!(dev
        .audit_recent(20)
        .unwrap()
        .iter()
        .any(|r| r.action == "receipt.refused"));
    drop(dev);

    // The real head office: the device is revoked there, so 401 and nothing erased.
    let server = HoServer::start(&sb.ho, &[]);
    repoint_device(&sb.dev, &server.url());
    sb.ho_ok(&["device", "revoke", "booth-1"]);
    check("revoked device", "HTTP 401");
    let st: serde_json::Value = serde_json::from_str(&sb.ho_ok(&["status", "--json"])).unwrap();
    assert_eq!(st["devices"][0]["revoked"], true);
}

#[test]
fn head_office_answers_bad_requests_with_codes_not_panics() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(
        &sb.ho,
        &[
            ("SEALBOX_HO_MAX_ENTRIES_PER_BATCH", "3"),
            ("SEALBOX_HO_DEVICE_BURST", "8"),
            ("SEALBOX_HO_DEVICE_RATE_PER_S", "1"),
        ],
    );
    let token = sb.enrol_at(&server.url());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(sb.ho.join("ca.pem")).unwrap()).unwrap();
    // No idle connections kept: head office closes a connection whose body it refused (413),
    // and a pooled one could be picked for the next request just as it closes.
    let http = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("{}/v1/sync", server.url());
    let post = |auth: Option<&str>, body: Vec<u8>| {
        let mut r = http
            .post(&url)
            .body(body)
            .header("content-type", "application/json");
        if let Some(t) = auth {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        let resp = r.send().unwrap();
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().unwrap_or(serde_json::Value::Null);
        (status, v["code"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(post(None, b"{}".to_vec()), (401, "unauthorized".into()));
    assert_eq!(
        post(Some("bm90IGEgdG9rZW4="), b"{}".to_vec()),
        (401, "unauthorized".into())
    );
    assert_eq!(
        post(Some(&token), b"not json".to_vec()),
        (400, "bad_request".into())
    );
    assert_eq!(
        post(Some(&token), br#"{"batch_id":"x","entries":[]}"#.to_vec()),
        (400, "bad_request".into())
    );
    let batch = |n: usize, sealed: &str| {
        let entries: Vec<serde_json::Value> = (0..n)
            .map(|_| serde_json::json!({"id": uuid::Uuid::now_v7(), "event_id": EVENT, "captured_at_ms": 1, "consent_version": "v", "consent_sha256": "a".repeat(64), "sealed": sealed}))
            .collect();
        serde_json::to_vec(
            &serde_json::json!({"batch_id": uuid::Uuid::now_v7(), "entries": entries}),
        )
        .unwrap()
    };
    assert_eq!(
        post(Some(&token), batch(4, "YWdl")),
        (413, "too_many_entries".into())
    );
    assert_eq!(
        post(Some(&token), batch(1, "bm90IGFnZQ==")),
        (400, "not_sealed".into()),
        "a payload that is not an age file"
    );
    // The same id again with other content: refused, the original kept.
    let age = sealbox_protocol::entry::b64_encode(b"age-encryption.org/v1\n-> X25519 first\n");
    let other = sealbox_protocol::entry::b64_encode(b"age-encryption.org/v1\n-> X25519 other\n");
    let id = uuid::Uuid::now_v7();
    let one = |sealed: &str| {
        serde_json::to_vec(&serde_json::json!({"batch_id": uuid::Uuid::now_v7(), "entries": [
            {"id": id, "event_id": EVENT, "captured_at_ms": 1, "consent_version": "v", "consent_sha256": "a".repeat(64), "sealed": sealed}
        ]}))
        .unwrap()
    };
    assert_eq!(post(Some(&token), one(&age)).0, 200);
    assert_eq!(post(Some(&token), one(&other)), (409, "conflict".into()));
    let conn = rusqlite::Connection::open(sb.ho.join("headoffice.db")).unwrap();
    let kept: Vec<u8> = conn
        .query_row(
            "SELECT sealed FROM entries WHERE id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(kept.ends_with(b"first\n"), "never overwritten");
    assert!(server.log().contains("refused"), "the conflict is logged");
    // A body over the limit is refused from its Content-Length, before it is read: the client
    // sees the 413, or (still writing the 17 MB) the connection closed under it.
    let big = vec![b'x'; 17 << 20];
    match http
        .post(&url)
        .body(big)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .send()
    {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("status=413") && l.contains("too_large")),
        "head office refused the body as too large"
    );
    // The bucket runs dry: 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let r = http
            .post(&url)
            .body(b"{}".to_vec())
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .send()
            .unwrap();
        if r.status().as_u16() == 429 {
            limited = Some(
                r.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok()),
            );
            break;
        }
    }
    let retry_after = limited.expect("per-device rate limit");
    assert!(
        retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "429 says when to come back: {retry_after:?}"
    );
    let r = http
        .get(format!("{}/v1/health", server.url()))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(ho_counts(&sb.ho), (1, 1));
    assert!(!server.log().contains("panicked"));
}

#[test]
fn soak_10000_entries_while_30_percent_of_connections_drop() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(
        &sb.ho,
        &[
            ("SEALBOX_HO_DEVICE_RATE_PER_S", "1000"),
            ("SEALBOX_HO_DEVICE_BURST", "1000"),
        ],
    );
    let proxy = FaultProxy::start(server.addr);
    sb.enrol_at(&proxy.url());
    let mut rng = Rng::from_time();
    proxy.random_drops(0.3, rng.next_u64());
    let opts = sealbox_device::sync_loop::LoopOptions {
        page: 250,
        timeout: Duration::from_secs(10),
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        idle_poll: Duration::from_millis(100),
        ..Default::default()
    };
    let sync = sealbox_device::sync_loop::SyncLoop::start(
        sb.dev.clone(),
        std::sync::Arc::new(OsKeychain),
        opts,
    );
    // Entries keep arriving while the loop sends.
    let start = Instant::now();
    for chunk in 0..20 {
        sb.add_many(chunk * 500, 500);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (held, _) = ho_counts(&sb.ho);
        if held == 10_000 && sb.pending() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "soak did not finish: head office {held}, device {} pending, state {:?}",
            sb.pending(),
            sync.state()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sync.stop();
    eprintln!(
        "soak: 10,000 entries in {:.1} s; {} connections, {} dropped by the proxy",
        start.elapsed().as_secs_f64(),
        proxy.connections.load(std::sync::atomic::Ordering::SeqCst),
        proxy.faulted.load(std::sync::atomic::Ordering::SeqCst)
    );
    // Each kind of fault really happened: connections dropped before head office saw the
    // request, and receipts lost after head office had committed and answered.
    let (before, after) = (
        proxy
            .requests_dropped
            .load(std::sync::atomic::Ordering::SeqCst),
        proxy
            .responses_dropped
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    eprintln!("soak: {before} requests dropped, {after} receipts lost after the commit");
    assert!(before > 0, "no request was dropped");
    assert!(after > 0, "no response was lost after head office answered");
    // And among them receipts: head office stored a batch, its receipt was lost, and the
    // device's resend of the same batch was answered as a duplicate.
    assert!(
        server.log().contains("duplicate=true"),
        "no receipt was lost after the commit"
    );
    assert_eq!(
        ho_counts(&sb.ho),
        (10_000, 10_000),
        "10,000 at head office, no duplicates"
    );
    assert_eq!(
        tombstones(&sb),
        10_000,
        "the device erased every one, on receipts"
    );
}

/// Forty devices post at the same moment through the real server, so its writer stores them in
/// group commits: every batch still gets its own receipt, signed for its device and exactly its
/// ids; a batch with a conflicting entry is refused alone and leaves nothing behind; a batch
/// sent twice at once is stored once and both copies get the same receipt.
#[test]
fn forty_devices_at_once_each_get_their_own_receipt() {
    use sealbox_protocol::sync::Receipt;
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[("SEALBOX_LOG", "sealbox_headoffice=debug")]);
    let url = server.url();
    let vk = sealbox_headoffice::keys::HoDir::new(&sb.ho)
        .load_verifying_key()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(sb.ho.join("ca.pem")).unwrap()).unwrap();
    let client = || {
        reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
            .build()
            .unwrap()
    };
    let envelope = |id: uuid::Uuid, sealed: &[u8]| {
        serde_json::json!({"id": id, "event_id": EVENT, "captured_at_ms": 1, "consent_version": "v",
            "consent_sha256": "a".repeat(64), "sealed": sealbox_protocol::entry::b64_encode(sealed)})
    };
    let post = |http: &reqwest::blocking::Client, token: &str, body: &serde_json::Value| {
        let resp = http
            .post(format!("{url}/v1/sync"))
            .header("authorization", format!("Bearer {token}"))
            .json(body)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    // Forty enrolled devices, and one entry already held.
    let tokens: Vec<String> = (0..40)
        .map(|i| {
            let f = sb.tmp.path().join(format!("sim-{i}.json"));
            sealbox_headoffice::admin::enroll(&sb.ho, &format!("sim-{i}"), EVENT, Some(&url), &f)
                .unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            v["device_token"].as_str().unwrap().to_string()
        })
        .collect();
    let held = uuid::Uuid::now_v7();
    let first = serde_json::json!({"batch_id": uuid::Uuid::now_v7(),
        "entries": [envelope(held, b"age-encryption.org/v1\nheld")]});
    assert_eq!(post(&client(), &tokens[0], &first).0, 200);

    // Device i sends 5 new entries; every tenth (i % 10 == 3) adds the held id with other
    // content; i % 10 == 7 sends its batch twice at once.
    let mut jobs = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let ids: Vec<uuid::Uuid> = (0..5).map(|_| uuid::Uuid::now_v7()).collect();
        let mut entries: Vec<_> = ids
            .iter()
            .map(|id| envelope(*id, b"age-encryption.org/v1\nnew"))
            .collect();
        if i % 10 == 3 {
            entries.push(envelope(held, b"age-encryption.org/v1\nother"));
        }
        let batch_id = uuid::Uuid::now_v7();
        let body = serde_json::json!({"batch_id": batch_id, "entries": entries});
        let copies = if i % 10 == 7 { 2 } else { 1 };
        for _ in 0..copies {
            jobs.push((i, token.clone(), batch_id, ids.clone(), body.clone()));
        }
    }
    let barrier = std::sync::Barrier::new(jobs.len());
    let answers: Vec<(usize, uuid::Uuid, Vec<uuid::Uuid>, u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(i, token, batch_id, ids, body)| {
                let (barrier, post, client) = (&barrier, &post, &client);
                s.spawn(move || {
                    let http = client();
                    barrier.wait();
                    let (status, text) = post(&http, token, body);
                    (*i, *batch_id, ids.clone(), status, text)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut stored = 1;
    let mut twice = std::collections::HashMap::new();
    for (i, batch_id, ids, status, text) in &answers {
        if i % 10 == 3 {
            assert_eq!(*status, 409, "device {i}: {text}");
            continue;
        }
        assert_eq!(*status, 200, "device {i}: {text}");
        let receipt: Receipt = serde_json::from_str(text).unwrap();
        receipt
            .verify_for(&vk, &format!("sim-{i}"), *batch_id, ids)
            .unwrap_or_else(|e| panic!("device {i}: {e}"));
        if i % 10 == 7 {
            if let Some(other) = twice.insert(*i, text.clone()) {
                assert_eq!(other, *text, "a resend gets the same receipt");
                continue;
            }
        }
        stored += ids.len() as u64;
    }
    assert_eq!(
        ho_counts(&sb.ho),
        (stored, stored),
        "each entry exactly once"
    );
    let refused = sealbox_tests::server::ho_count(
        &sb.ho,
        "SELECT count(*) FROM entries WHERE device IN ('sim-3', 'sim-13', 'sim-23', 'sim-33')",
    );
    assert_eq!(refused, 0, "a refused batch leaves nothing behind");
    // The writer did group them: some commit carried more than one batch.
    let log = server.log();
    let grouped = log
        .lines()
        .filter(|l| l.contains("group commit"))
        .filter_map(|l| l.split("batches=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<usize>().ok())
        .any(|n| n > 1);
    assert!(grouped, "no group commit held more than one batch:\n{log}");
}

#[test]
fn a_repeat_sync_resumes_its_tls_session_and_a_lost_receipt_still_means_committed() {
    use std::sync::atomic::Ordering::SeqCst;
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    let proxy = FaultProxy::start(server.addr);
    sb.enrol_at(&proxy.url());
    sb.add_many(0, 20);
    let mut dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    let sync_with_a_new_client = |dev: &mut Device| {
        // Like the kiosk's sync loop: a new client (and connection) each round.
        let client = dev.sync_client(Duration::from_secs(5)).unwrap();
        dev.sync(&client, 10, &mut |_| {})
    };
    // The first connection of this process makes a full handshake.
    assert_eq!(sync_with_a_new_client(&mut dev).unwrap().erased, 20);
    assert_eq!(proxy.resumed.load(SeqCst), 0, "nothing to resume yet");
    let first = proxy.connections.load(SeqCst);
    assert!(first >= 1);
    // The next round resumes the session head office's ticket allows.
    drop(dev);
    sb.add_many(20, 20);
    let mut dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    assert_eq!(sync_with_a_new_client(&mut dev).unwrap().erased, 20);
    assert!(proxy.connections.load(SeqCst) > first, "a new connection");
    assert_eq!(proxy.resumed.load(SeqCst), 1, "the repeat sync resumed");
    // A receipt lost on a resumed connection: head office had committed the batch (the proxy
    // tells the ticket flight from the answer), the device erased nothing.
    drop(dev);
    sb.add_many(40, 10);
    let held = ho_counts(&sb.ho).0;
    let mut dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    proxy.next(Fault::DropResponse);
    let err = sync_with_a_new_client(&mut dev).unwrap_err();
    assert_eq!(err.code(), "offline", "{err}");
    assert_eq!(proxy.resumed.load(SeqCst), 2);
    assert_eq!(proxy.responses_dropped.load(SeqCst), 1);
    assert_eq!(
        ho_counts(&sb.ho).0,
        held + 10,
        "committed before the answer was lost"
    );
    assert_eq!(dev.counts().unwrap().pending, 10);
    // Sent again: the same receipt, each entry once.
    assert_eq!(sync_with_a_new_client(&mut dev).unwrap().erased, 10);
    assert_eq!(ho_counts(&sb.ho), (50, 50));
    assert_eq!(proxy.resumed.load(SeqCst), 3);
}

/// The same tests with head office on PostgreSQL (a fresh database each, on the private cluster
/// `cargo xtask test` starts).
mod on_postgres {
    use sealbox_tests::pg::on_postgres;

    #[test]
    fn round_trip_1000_entries_erased_on_a_verified_receipt() {
        on_postgres(super::round_trip_1000_entries_erased_on_a_verified_receipt)
    }

    #[test]
    fn server_killed_mid_batch_and_device_killed_between_receipt_and_erase() {
        on_postgres(super::server_killed_mid_batch_and_device_killed_between_receipt_and_erase)
    }

    #[test]
    fn untrusted_servers_and_bad_receipts_erase_nothing() {
        on_postgres(super::untrusted_servers_and_bad_receipts_erase_nothing)
    }

    #[test]
    fn forty_devices_at_once_each_get_their_own_receipt() {
        on_postgres(super::forty_devices_at_once_each_get_their_own_receipt)
    }

    #[test]
    fn a_repeat_sync_resumes_its_tls_session_and_a_lost_receipt_still_means_committed() {
        on_postgres(
            super::a_repeat_sync_resumes_its_tls_session_and_a_lost_receipt_still_means_committed,
        )
    }
}
