//! Device health reports (issue #15, item 1) against a real head office over real TLS: each
//! sync reports the device's counts; head office keeps the last report and when it saw it; a
//! revoked device's reports are refused; an older head office (no report endpoint) still takes
//! the sync.

use sealbox_device::{Device, OsKeychain};
use sealbox_headoffice::console::store;
use sealbox_tests::server::HoServer;
use sealbox_tests::*;
use std::time::Duration;

fn reports(sb: &Sandbox) -> std::collections::HashMap<String, store::SeenReport> {
    let conn = sealbox_headoffice::db::open(&sb.ho.join("headoffice.db")).unwrap();
    store::migrate(&conn).unwrap();
    store::health_all(&conn).unwrap()
}

#[test]
fn each_sync_reports_counts_and_head_office_keeps_the_last() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 3);
    assert!(reports(&sb).is_empty());

    // A report on its own (what the kiosk's loop sends while idle), with entries waiting.
    let before = sealbox_headoffice::now_ms();
    {
        let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let client = dev.sync_client(Duration::from_secs(10)).unwrap();
        assert!(dev.send_health(&client, Some("offline")).unwrap());
    }
    let r = &reports(&sb)["booth-1"];
    assert_eq!(
        (r.report.pending, r.report.exported, r.report.quarantined),
        (3, 0, 0)
    );
    assert!(r.report.oldest_waiting_s.is_some());
    assert_eq!(r.report.app_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(r.report.last_error.as_deref(), Some("offline"));
    assert!(r.seen_at_ms >= before);
    let first_seen = r.seen_at_ms;

    // A sync sends its report after the batches: nothing waiting any more.
    std::thread::sleep(Duration::from_millis(5));
    sb.dev_ok(&["sync"]);
    let r = &reports(&sb)["booth-1"];
    assert_eq!(r.report.pending, 0);
    assert_eq!(r.report.oldest_waiting_s, None);
    assert_eq!(r.report.last_error, None);
    assert!(r.seen_at_ms > first_seen);

    // Nothing a visitor typed reached the report table.
    let conn = sealbox_headoffice::db::open(&sb.ho.join("headoffice.db")).unwrap();
    let json: String = conn
        .query_row(
            "SELECT report FROM console_device_health WHERE device = 'booth-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!json.contains("1390000"), "{json}");

    // Revoked: the sync and its report are refused, and the last report stays as it was.
    sb.ho_ok(&["device", "revoke", "booth-1"]);
    sb.add_many(10, 1);
    let seen = reports(&sb)["booth-1"].seen_at_ms;
    sb.dev_fail(&["sync"], &[]);
    {
        let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let client = dev.sync_client(Duration::from_secs(10)).unwrap();
        let e = dev.send_health(&client, None).unwrap_err();
        assert_eq!(e.code(), "unauthorized");
    }
    assert_eq!(reports(&sb)["booth-1"].seen_at_ms, seen);
}

#[test]
fn a_report_with_free_text_is_refused() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    let token = sb.enrol_at(&server.url());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(sb.ho.join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let body = serde_json::json!({"format": "sealbox-health/1", "pending": 1, "exported": 0,
        "quarantined": 0, "app_version": "0.1.0", "last_error": "张三 13800000000", "sent_at_ms": 1});
    let r = client
        .post(format!("{}/v1/health-report", server.url()))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(reports(&sb).is_empty());
}

#[test]
fn an_older_head_office_without_reports_still_takes_the_sync() {
    let sb = Sandbox::headoffice();
    let ho = sealbox_headoffice::keys::HoDir::new(&sb.ho)
        .unlock(&sealbox_headoffice::Passphrase::new(PASSPHRASE))
        .unwrap();
    let key = ho.load_signing_key().unwrap();
    let (addr, _rt) = crate::sync::fake_head_office(&sb, move |req| {
        let ids = req.entries.iter().map(|e| e.id).collect();
        sealbox_protocol::sync::Receipt::sign(req.batch_id, "booth-1", ids, 1, &key)
    });
    sb.enrol_at(&format!("https://{addr}"));
    sb.add_many(0, 2);
    sb.dev_ok(&["sync"]);
    assert_eq!(sb.pending(), 0);
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    let client = dev.sync_client(Duration::from_secs(10)).unwrap();
    assert!(!dev.send_health(&client, None).unwrap(), "404: not taken");
}

#[test]
fn the_kiosk_loop_reports_while_idle() {
    use sealbox_device::sync_loop::{LoopOptions, SyncLoop};
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    let opts = LoopOptions {
        timeout: Duration::from_secs(10),
        idle_poll: Duration::from_millis(100),
        health_every: Duration::from_millis(300),
        ..Default::default()
    };
    let sync = SyncLoop::start(sb.dev.clone(), std::sync::Arc::new(OsKeychain), opts);
    let seen = || reports(&sb).get("booth-1").map(|r| r.seen_at_ms);
    let wait_for = |what: &str, ok: &dyn Fn(Option<i64>) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let s = seen();
            if ok(s) {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let first = wait_for("a first report with nothing to send", &|s| s.is_some()).unwrap();
    wait_for("another report a little later", &|s| {
        s.is_some_and(|s| s > first)
    });
    sync.stop();
    assert_eq!(reports(&sb)["booth-1"].report.pending, 0);
}
