//! Sync benchmark, run by `cargo xtask bench` inside a keyring session:
//! - 10,000 entries device → head office over TLS on loopback, durable at head office and erased
//!   on the device, beside head office storing batches of the same size with no network or device;
//! - 500 devices syncing one batch each at once, beside the same requests one at a time.
//!
//! Head office is the real `sealbox-headoffice serve`, in its own process as in production: in
//! this one the device switches SQLCipher's memory security on, which is process-wide (every
//! allocation of every SQLite connection is then locked and wiped), and head office never runs
//! with it. Writes JSON to `SEALBOX_BENCH_OUT`.

use sealbox_headoffice::admin;
use sealbox_headoffice::keys::HoDir;
use sealbox_protocol::sync::SyncRequest;
use sealbox_protocol::EntryEnvelope;
use sealbox_tests::bench::{forget_key, BenchSite};
use sealbox_tests::server::HoServer;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (entries, devices) = if quick { (2_000, 100) } else { (10_000, 500) };
    let site = BenchSite::create();
    let (ho_dir, pass, tmp) = (&site.ho_dir, &site.pass, &site.tmp);

    // Baseline first, before anything in this process opens SQLCipher: head office storing
    // 500-entry batches straight into its database, entries sealed to it like a device's.
    let base_dir = tmp.path().join("ho-baseline");
    admin::init(
        &base_dir,
        pass,
        &sealbox_headoffice::recovery::KitOptions::beside(&base_dir),
        None,
    )
    .unwrap();
    let example = sealbox_tests::workspace().join("examples/trade-show.json");
    admin::event_create(&base_dir, &std::fs::read_to_string(example).unwrap()).unwrap();
    admin::enroll(
        &base_dir,
        "bench-device",
        sealbox_tests::EVENT,
        None,
        &tmp.path().join("baseline-device.json"),
    )
    .unwrap();
    let template = sealed_like_a_device(&HoDir::new(&base_dir));
    let mut conn = sealbox_headoffice::db::open(&HoDir::new(&base_dir).db()).unwrap();
    let key = HoDir::new(&base_dir)
        .unlock(pass)
        .unwrap()
        .load_signing_key()
        .unwrap();
    let batches: Vec<SyncRequest> = (0..entries / 500)
        .map(|_| SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries: (0..500).map(|_| fresh(&template)).collect(),
        })
        .collect();
    let t = Instant::now();
    for req in &batches {
        sealbox_headoffice::db::ingest(
            &mut conn,
            "bench-device",
            req,
            sealbox_headoffice::db::Source::Sync,
            &key,
            1,
        )
        .unwrap();
    }
    let ingest_s = t.elapsed().as_secs_f64();
    drop(conn);

    // The same on PostgreSQL (the private cluster `cargo xtask bench` starts, over TCP on
    // 127.0.0.1): batches of the same size, each one transaction, into a fresh database.
    let pg_ingest_s = std::env::var("SEALBOX_TEST_PG_URL").ok().map(|_| {
        use sealbox_headoffice::store::{Audit, NewDevice, Source, Store};
        let db = sealbox_tests::pg::TestDb::new();
        let mut store = Store::open_url(&db.url).unwrap();
        let config =
            std::fs::read_to_string(sealbox_tests::workspace().join("examples/trade-show.json"))
                .unwrap();
        let config =
            serde_json::to_string(&sealbox_protocol::EventConfig::from_json(&config).unwrap())
                .unwrap();
        store
            .add_event(
                sealbox_tests::EVENT,
                &config,
                1,
                Audit::new(1, "event.created", serde_json::json!({})),
            )
            .unwrap();
        store
            .add_device(
                &NewDevice {
                    name: "bench-device",
                    event_id: sealbox_tests::EVENT,
                    token_sha256: "bench",
                    verifying_key: "bench",
                    enrolled_at_ms: 1,
                },
                Audit::new(1, "device.enrolled", serde_json::json!({})),
            )
            .unwrap();
        let batches: Vec<SyncRequest> = (0..entries / 500)
            .map(|_| SyncRequest {
                batch_id: uuid::Uuid::now_v7(),
                entries: (0..500).map(|_| fresh(&template)).collect(),
            })
            .collect();
        let t = Instant::now();
        for req in &batches {
            store
                .ingest("bench-device", req, Source::Sync, &key, 1)
                .unwrap();
        }
        t.elapsed().as_secs_f64()
    });

    // The real head office, on a free port, without per-device rate limits.
    let mut server = HoServer::start(
        ho_dir,
        &[
            ("SEALBOX_HO_DEVICE_RATE_PER_S", "1000000"),
            ("SEALBOX_HO_DEVICE_BURST", "1000000"),
        ],
    );
    let url = server.url();
    let ho = HoDir::new(ho_dir);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // One device with `entries` waiting.
    let (dev_dir, mut dev) = site.device_with_entries(Some(&url), entries);
    let envelopes = dev.pending_envelopes(1).unwrap();

    let client = dev.sync_client(Duration::from_secs(30)).unwrap();
    let t = Instant::now();
    let report = dev.sync(&client, 500, &mut |_| {}).unwrap();
    let sync_s = t.elapsed().as_secs_f64();
    assert_eq!(report.erased as usize, entries);
    assert_eq!(dev.counts().unwrap().pending, 0);

    // Many devices at once: each posts one batch of 10 over its own connection.
    let mut tokens = Vec::new();
    for d in 0..devices {
        let f = tmp.path().join(format!("d{d}.json"));
        admin::enroll(
            ho_dir,
            &format!("sim-{d}"),
            "trade-show-2026",
            Some(&url),
            &f,
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        tokens.push(v["device_token"].as_str().unwrap().to_string());
    }
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ho.ca_cert()).unwrap()).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let make_client = || {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let body = |_: usize| {
        let entries = (0..10).map(|_| fresh(&envelopes[0])).collect();
        serde_json::to_vec(&SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries,
        })
        .unwrap()
    };
    let sync_request = |http: &reqwest::Client, token: &str| {
        http.post(format!("{url}/v1/sync"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body(0))
            .build()
            .unwrap()
    };
    // Baseline: the same kind of request, one device after another.
    let (mut seq, seq_errors) = rt.block_on(async {
        let mut lat = Vec::new();
        let mut errors = 0;
        for token in tokens.iter().take(50) {
            let http = make_client();
            let req = sync_request(&http, token);
            let (ms, ok) = timed(http, req).await;
            lat.push(ms);
            errors += usize::from(!ok);
        }
        (lat, errors)
    });
    // All devices at once, alternating with the floor under it: the same number of fresh
    // clients, each a full TLS handshake and a request that touches no database (`/v1/health`).
    let rounds = if quick { 1 } else { 3 };
    let (mut conc_p50, mut conc_p99, mut floor_p99, mut wall) = (vec![], vec![], vec![], vec![]);
    let mut conc_errors = 0;
    for _ in 0..rounds {
        let reqs = tokens
            .iter()
            .map(|token| {
                let http = make_client();
                let req = sync_request(&http, token);
                (http, req)
            })
            .collect();
        let (mut lat, errors, w) = rt.block_on(at_once(reqs));
        conc_p50.push(percentile(&mut lat, 0.5));
        conc_p99.push(percentile(&mut lat, 0.99));
        conc_errors += errors;
        wall.push(w);
        let reqs = (0..devices)
            .map(|_| {
                let http = make_client();
                let req = http.get(format!("{url}/v1/health")).build().unwrap();
                (http, req)
            })
            .collect();
        let (mut lat, errors, _) = rt.block_on(at_once(reqs));
        assert_eq!(errors, 0, "health requests failed");
        floor_p99.push(percentile(&mut lat, 0.99));
    }
    server.terminate();
    forget_key(&dev_dir);
    let out = serde_json::json!({
        "sync_entries": entries,
        "sync_entries_per_s": entries as f64 / sync_s,
        "headoffice_ingest_only_entries_per_s": entries as f64 / ingest_s,
        "headoffice_ingest_only_postgres_entries_per_s": pg_ingest_s.map(|s| entries as f64 / s),
        "simulated_devices": devices,
        "headoffice_500_devices_rounds": rounds,
        "headoffice_500_devices_p50_ms": percentile(&mut conc_p50, 0.5),
        "headoffice_500_devices_p99_ms": percentile(&mut conc_p99, 0.5),
        "headoffice_500_devices_errors": conc_errors,
        "headoffice_500_devices_wall_ms": percentile(&mut wall, 0.5),
        "headoffice_500_tls_handshakes_p99_ms": percentile(&mut floor_p99, 0.5),
        "headoffice_one_device_p50_ms": percentile(&mut seq, 0.5),
        "headoffice_one_device_errors": seq_errors,
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{text}");
    if let Ok(p) = std::env::var("SEALBOX_BENCH_OUT") {
        std::fs::write(p, text).unwrap();
    }
}

/// A sealed payload of the size a device makes: the example visitor, age-encrypted to head
/// office (head office stores it as it is; the content does not change the cost).
fn sealed_like_a_device(ho: &HoDir) -> EntryEnvelope {
    use std::io::Write;
    let recipient: age::x25519::Recipient = ho.load_recipient().unwrap().parse().unwrap();
    let plaintext = br#"{"values":{"name":"\u8bbf\u5ba2","phone":"13800000000","email":"v@example.com","company":"\u793a\u4f8b","interest":"sensors"},"consent":true}"#;
    let mut sealed = Vec::new();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let mut w = encryptor.wrap_output(&mut sealed).unwrap();
    w.write_all(&plaintext[..]).unwrap();
    w.finish().unwrap();
    EntryEnvelope {
        id: uuid::Uuid::now_v7(),
        event_id: sealbox_tests::EVENT.into(),
        captured_at_ms: 1,
        consent_version: "2026-01".into(),
        consent_sha256: "0".repeat(64),
        sealed,
    }
}

/// One request; its time from send to the whole answer, and whether it succeeded.
async fn timed(http: reqwest::Client, req: reqwest::Request) -> (f64, bool) {
    let t = Instant::now();
    let ok = match http.execute(req).await {
        Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
        Err(_) => false,
    };
    (t.elapsed().as_secs_f64() * 1000.0, ok)
}

/// Every request released at once by a barrier, each on its own client (its own connection
/// and handshake): the latencies, the number that failed, and the wall time in ms.
async fn at_once(reqs: Vec<(reqwest::Client, reqwest::Request)>) -> (Vec<f64>, usize, f64) {
    let barrier = Arc::new(tokio::sync::Barrier::new(reqs.len() + 1));
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|(http, req)| {
            let b = barrier.clone();
            tokio::spawn(async move {
                b.wait().await;
                timed(http, req).await
            })
        })
        .collect();
    barrier.wait().await;
    let t = Instant::now();
    let mut lat = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (ms, ok) = task.await.unwrap();
        lat.push(ms);
        errors += usize::from(!ok);
    }
    (lat, errors, t.elapsed().as_secs_f64() * 1000.0)
}

/// `template` under a new id.
fn fresh(template: &EntryEnvelope) -> EntryEnvelope {
    let mut e = template.clone();
    e.id = uuid::Uuid::now_v7();
    e
}
