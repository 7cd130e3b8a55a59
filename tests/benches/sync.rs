//! Sync benchmark, run by `cargo xtask bench` inside a keyring session:
//! - 10,000 entries device → head office over TLS on loopback, durable at head office and erased
//!   on the device, beside head office storing the same batches with no network or device;
//! - 500 devices syncing one batch each at once, beside the same requests one at a time.
//!
//! Writes JSON to `SEALBOX_BENCH_OUT`.

use sealbox_headoffice::keys::HoDir;
use sealbox_headoffice::{admin, config::Config, server};
use sealbox_protocol::sync::SyncRequest;
use sealbox_tests::bench::{forget_key, BenchSite};
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

    // Head office in this process, on a free port.
    let ho = HoDir::new(ho_dir);
    let mut cfg = Config::load(ho_dir).unwrap();
    cfg.device_rate_per_s = 1e6;
    cfg.device_burst = 1e6;
    let state = Arc::new(server::ServerState::open(&ho, &cfg).unwrap());
    let tls = server::load_tls(&ho, &cfg).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(server::serve(listener, tls, state, async move {
        let _ = stop_rx.await;
    }));

    // One device with `entries` waiting.
    let (dev_dir, mut dev) = site.device_with_entries(Some(&url), entries);
    let envelopes = dev.pending_envelopes(entries).unwrap();

    // Baseline: head office storing the same 500-entry batches straight into its database.
    let base_dir = tmp.path().join("ho-baseline");
    admin::init(&base_dir, pass).unwrap();
    let mut conn = sealbox_headoffice::db::open(&HoDir::new(&base_dir).db()).unwrap();
    let key = HoDir::new(&base_dir).load_signing_key().unwrap();
    let t = Instant::now();
    for chunk in envelopes.chunks(500) {
        let req = SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries: chunk.to_vec(),
        };
        sealbox_headoffice::db::ingest(&mut conn, "bench-device", &req, &key, 1).unwrap();
    }
    let ingest_s = t.elapsed().as_secs_f64();

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
    let template = envelopes[0].clone();
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
        let entries = (0..10)
            .map(|_| {
                let mut e = template.clone();
                e.id = uuid::Uuid::now_v7();
                e
            })
            .collect();
        serde_json::to_vec(&SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries,
        })
        .unwrap()
    };
    let post = |http: reqwest::Client, token: String, body: Vec<u8>, url: String| async move {
        let t = Instant::now();
        let r = http
            .post(format!("{url}/v1/sync"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let ok = matches!(&r, Ok(resp) if resp.status().is_success());
        (t.elapsed().as_secs_f64() * 1000.0, ok)
    };
    // Baseline: the same kind of request, one device after another.
    let (mut seq, seq_errors) = rt.block_on(async {
        let mut lat = Vec::new();
        let mut errors = 0;
        for token in tokens.iter().take(50) {
            let (ms, ok) = post(make_client(), token.clone(), body(0), url.clone()).await;
            lat.push(ms);
            errors += usize::from(!ok);
        }
        (lat, errors)
    });
    let (mut conc, conc_errors, wall) = rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(devices));
        let t = Instant::now();
        let tasks: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let (b, http, token, body, url) = (
                    barrier.clone(),
                    make_client(),
                    token.clone(),
                    body(i),
                    url.clone(),
                );
                tokio::spawn(async move {
                    b.wait().await;
                    post(http, token, body, url).await
                })
            })
            .collect();
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (ms, ok) = t.await.unwrap();
            lat.push(ms);
            errors += usize::from(!ok);
        }
        (lat, errors, t.elapsed().as_secs_f64())
    });
    let _ = stop_tx.send(());
    forget_key(&dev_dir);
    let out = serde_json::json!({
        "sync_entries": entries,
        "sync_entries_per_s": entries as f64 / sync_s,
        "headoffice_ingest_only_entries_per_s": entries as f64 / ingest_s,
        "simulated_devices": devices,
        "headoffice_500_devices_p50_ms": percentile(&mut conc, 0.5),
        "headoffice_500_devices_p99_ms": percentile(&mut conc, 0.99),
        "headoffice_500_devices_errors": conc_errors,
        "headoffice_500_devices_wall_ms": wall * 1000.0,
        "headoffice_one_device_p50_ms": percentile(&mut seq, 0.5),
        "headoffice_one_device_errors": seq_errors,
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{text}");
    if let Ok(p) = std::env::var("SEALBOX_BENCH_OUT") {
        std::fs::write(p, text).unwrap();
    }
}
