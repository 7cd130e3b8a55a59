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
        use sealbox_headoffice::store::Source;
        let db = sealbox_tests::pg::TestDb::new();
        let config = sealbox_tests::pg::example_config();
        let mut store = sealbox_tests::pg::store_with(
            &db.url,
            sealbox_tests::EVENT,
            &config,
            &["bench-device"],
        );
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

    // Many devices at once on each backend, then the second copy's cost on a standby.
    let mut out = serde_json::json!({
        "sync_entries": entries,
        "sync_entries_per_s": entries as f64 / sync_s,
        "headoffice_ingest_only_entries_per_s": entries as f64 / ingest_s,
        "headoffice_ingest_only_postgres_entries_per_s": pg_ingest_s.map(|s| entries as f64 / s),
        "simulated_devices": devices,
    });
    let rounds = if quick { 1 } else { 3 };
    let many = Many {
        rt: &rt,
        devices,
        rounds,
        template: &envelopes[0],
        tmp: tmp.path(),
    };
    many.measure("sqlite", ho_dir, &url, &mut out);
    // One device at a time, for scale: the same request, each a fresh connection.
    let tokens = many.enrol("sqlite", ho_dir, &url, 50);
    let make = many.configs(&HoDir::new(ho_dir), 50);
    let mut seq = Vec::new();
    let mut seq_errors = 0;
    for (token, tls) in tokens.iter().zip(&make) {
        let (ms, ok) = rt.block_on(async {
            let http = new_client(tls.config.clone());
            let req = sync_request(&http, &url, token, &envelopes[0]);
            timed(http, req).await
        });
        seq.push(ms);
        seq_errors += usize::from(!ok);
    }
    out["headoffice_one_device_p50_ms"] = percentile(&mut seq, 0.5).into();
    out["headoffice_one_device_errors"] = seq_errors.into();
    server.terminate();
    forget_key(&dev_dir);

    if std::env::var("SEALBOX_TEST_PG_URL").is_ok() {
        // The same on a head office over PostgreSQL (the private cluster, over TCP).
        let db = sealbox_tests::pg::TestDb::new();
        let pg_dir = tmp.path().join("ho-postgres");
        std::fs::create_dir_all(&pg_dir).unwrap();
        std::fs::write(
            pg_dir.join("config.toml"),
            sealbox_tests::pg::config_for(&db.url),
        )
        .unwrap();
        admin::init(
            &pg_dir,
            pass,
            &sealbox_headoffice::recovery::KitOptions::beside(&pg_dir),
            None,
        )
        .unwrap();
        let example = sealbox_tests::workspace().join("examples/trade-show.json");
        admin::event_create(&pg_dir, &std::fs::read_to_string(example).unwrap()).unwrap();
        let mut server = HoServer::start(
            &pg_dir,
            &[
                ("SEALBOX_HO_DEVICE_RATE_PER_S", "1000000"),
                ("SEALBOX_HO_DEVICE_BURST", "1000000"),
            ],
        );
        let pg_url = server.url();
        many.measure("postgres", &pg_dir, &pg_url, &mut out);
        server.terminate();
    }
    if std::env::var("SEALBOX_TEST_PG_BIN").is_ok() {
        standby_cost(
            tmp.path(),
            &template,
            &key,
            if quick { 20 } else { 60 },
            &mut out,
        );
    }
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{text}");
    if let Ok(p) = std::env::var("SEALBOX_BENCH_OUT") {
        std::fs::write(p, text).unwrap();
    }
}

/// Many simulated devices syncing at once against one head office server.
struct Many<'a> {
    rt: &'a tokio::runtime::Runtime,
    devices: usize,
    rounds: usize,
    template: &'a EntryEnvelope,
    tmp: &'a std::path::Path,
}

impl Many<'_> {
    /// `n` devices enrolled at the head office in `ho_dir`: their tokens.
    fn enrol(&self, backend: &str, ho_dir: &std::path::Path, url: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|d| {
                let f = self.tmp.join(format!("{backend}-d{d}-{n}.json"));
                admin::enroll(
                    ho_dir,
                    &format!("sim-{d}-{n}"),
                    sealbox_tests::EVENT,
                    Some(url),
                    &f,
                )
                .unwrap();
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
                std::fs::remove_file(&f).unwrap();
                v["device_token"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// One TLS configuration per device, each with its own session memory, as each device
    /// process has: trusting only head office's CA, like the device's client.
    fn configs(&self, ho: &HoDir, n: usize) -> Vec<DeviceTls> {
        let ca = std::fs::read(ho.ca_cert()).unwrap();
        (0..n).map(|_| DeviceTls::new(&ca)).collect()
    }

    /// Rounds of: every device's first sync at once (a full handshake each), the floor under
    /// it (as many full handshakes asking `/v1/health`, which touches no database), every
    /// device's second sync (a new connection resuming its session), and the floor under that
    /// (resumed handshakes asking `/v1/health`). Medians over the rounds, into `out` under
    /// keys naming the number of devices and the backend.
    fn measure(
        &self,
        backend: &str,
        ho_dir: &std::path::Path,
        url: &str,
        out: &mut serde_json::Value,
    ) {
        let n = self.devices;
        let tokens = self.enrol(backend, ho_dir, url, n);
        let ho = HoDir::new(ho_dir);
        let mut m: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        let mut errors = [0usize; 2];
        let mut offered = 0;
        for _ in 0..self.rounds {
            let tls = self.configs(&ho, n);
            let syncs = |tls: &[DeviceTls]| {
                tokens
                    .iter()
                    .zip(tls)
                    .map(|(token, t)| {
                        let http = new_client(t.config.clone());
                        let req = sync_request(&http, url, token, self.template);
                        (http, req)
                    })
                    .collect()
            };
            let healths = |tls: &[DeviceTls]| {
                tls.iter()
                    .map(|t| {
                        let http = new_client(t.config.clone());
                        let req = http.get(format!("{url}/v1/health")).build().unwrap();
                        (http, req)
                    })
                    .collect()
            };
            let (mut lat, e, wall) = self.rt.block_on(at_once(syncs(&tls)));
            m.entry("first_p50")
                .or_default()
                .push(percentile(&mut lat, 0.5));
            m.entry("first_p99")
                .or_default()
                .push(percentile(&mut lat, 0.99));
            m.entry("first_wall").or_default().push(wall);
            errors[0] += e;
            let fresh = self.configs(&ho, n);
            let (mut lat, e, _) = self.rt.block_on(at_once(healths(&fresh)));
            assert_eq!(e, 0, "health requests failed");
            m.entry("floor_p99")
                .or_default()
                .push(percentile(&mut lat, 0.99));
            let before: usize = tls.iter().map(DeviceTls::offered).sum();
            let (mut lat, e, _) = self.rt.block_on(at_once(syncs(&tls)));
            offered += tls.iter().map(DeviceTls::offered).sum::<usize>() - before;
            m.entry("second_p50")
                .or_default()
                .push(percentile(&mut lat, 0.5));
            m.entry("second_p99")
                .or_default()
                .push(percentile(&mut lat, 0.99));
            errors[1] += e;
            let (mut lat, e, _) = self.rt.block_on(at_once(healths(&tls)));
            assert_eq!(e, 0, "health requests failed");
            m.entry("resumed_floor_p99")
                .or_default()
                .push(percentile(&mut lat, 0.99));
        }
        let mut med = |k: &str| percentile(m.get_mut(k).unwrap(), 0.5);
        let p = format!("headoffice_{n}_devices_{backend}");
        let (first_p99, floor_p99) = (med("first_p99"), med("floor_p99"));
        let (second_p99, resumed_floor) = (med("second_p99"), med("resumed_floor_p99"));
        out[format!("{p}_first_sync_p50_ms")] = med("first_p50").into();
        out[format!("{p}_first_sync_p99_ms")] = first_p99.into();
        out[format!("{p}_first_sync_wall_ms")] = med("first_wall").into();
        out[format!("{p}_first_sync_errors")] = errors[0].into();
        out[format!("{p}_tls_floor_p99_ms")] = floor_p99.into();
        out[format!("{p}_first_sync_vs_tls_floor_p99")] = (first_p99 / floor_p99).into();
        out[format!("{p}_second_sync_p50_ms")] = med("second_p50").into();
        out[format!("{p}_second_sync_p99_ms")] = second_p99.into();
        out[format!("{p}_second_sync_errors")] = errors[1].into();
        out[format!("{p}_second_sync_tickets_offered")] = offered.into();
        out[format!("{p}_resumed_tls_floor_p99_ms")] = resumed_floor.into();
        out[format!("{p}_rounds")] = self.rounds.into();
    }
}

/// A simulated device's TLS settings (its CA and session memory), counting how often it
/// offered head office a ticket to resume.
struct DeviceTls {
    config: rustls::ClientConfig,
    sessions: Arc<CountingSessions>,
}

impl DeviceTls {
    fn new(ca_pem: &[u8]) -> DeviceTls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let sessions = Arc::new(CountingSessions {
            inner: rustls::client::ClientSessionMemoryCache::new(4),
            offered: Default::default(),
        });
        config.resumption = rustls::client::Resumption::store(sessions.clone());
        DeviceTls { config, sessions }
    }

    fn offered(&self) -> usize {
        self.sessions
            .offered
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The device's in-memory session cache, counting the tickets taken to resume with.
#[derive(Debug)]
struct CountingSessions {
    inner: rustls::client::ClientSessionMemoryCache,
    offered: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingSessions {
    fn set_kx_hint(&self, n: rustls::pki_types::ServerName<'static>, g: rustls::NamedGroup) {
        self.inner.set_kx_hint(n, g)
    }
    fn kx_hint(&self, n: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(n)
    }
    fn set_tls12_session(
        &self,
        n: rustls::pki_types::ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(n, v)
    }
    fn tls12_session(
        &self,
        n: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(n)
    }
    fn remove_tls12_session(&self, n: &rustls::pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(n)
    }
    fn insert_tls13_ticket(
        &self,
        n: rustls::pki_types::ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(n, v)
    }
    fn take_tls13_ticket(
        &self,
        n: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let t = self.inner.take_tls13_ticket(n);
        if t.is_some() {
            self.offered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        t
    }
}

/// A new HTTPS client (its own connection pool, so its own connection) on `tls`.
fn new_client(tls: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A device's sync of a batch of 10 entries like `template`.
fn sync_request(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    template: &EntryEnvelope,
) -> reqwest::Request {
    let body = serde_json::to_vec(&SyncRequest {
        batch_id: uuid::Uuid::now_v7(),
        entries: (0..10).map(|_| fresh(template)).collect(),
    })
    .unwrap();
    http.post(format!("{url}/v1/sync"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body)
        .build()
        .unwrap()
}

/// The second copy's cost: a PostgreSQL primary with a synchronous standby (streaming
/// replication, `synchronous_commit = on`, both on this machine and disk), and head office's
/// ingest of 500-entry batches into it, alternating batch by batch between a connection that
/// waits for the standby (the default) and one that waits only for the primary's own disk
/// (`synchronous_commit = local`).
fn standby_cost(
    tmp: &std::path::Path,
    template: &EntryEnvelope,
    key: &ed25519_dalek::SigningKey,
    batches: usize,
    out: &mut serde_json::Value,
) {
    use sealbox_headoffice::store::{Source, Store};
    use sealbox_tests::pg::Cluster;
    let root = tmp.join("standby-bench");
    let mut primary = Cluster::init(
        &root.join("primary"),
        "wal_level = replica\nmax_wal_senders = 4\nsynchronous_commit = on\nsynchronous_standby_names = 'FIRST 1 (standby1)'\n",
    );
    primary.start();
    let mut standby = Cluster::standby_of(&primary, &root.join("standby"), "standby1");
    standby.start();
    let mut c = postgres::Client::connect(&primary.url("postgres"), postgres::NoTls).unwrap();
    let t = Instant::now();
    loop {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1' AND sync_state = 'sync'",
                &[],
            )
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the standby never became synchronous"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.batch_execute("CREATE DATABASE sealbox").unwrap();
    let url = primary.url("sealbox");
    let config = sealbox_tests::pg::example_config();
    let mut both =
        sealbox_tests::pg::store_with(&url, sealbox_tests::EVENT, &config, &["bench-device"]);
    let mut local =
        Store::open_url(&format!("{url}?options=-c%20synchronous_commit%3Dlocal")).unwrap();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..batches * 2 {
        let req = SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries: (0..500).map(|_| fresh(template)).collect(),
        };
        let store = if i % 2 == 0 { &mut both } else { &mut local };
        let t = Instant::now();
        store
            .ingest("bench-device", &req, Source::Sync, key, 1)
            .unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if i % 2 == 0 {
            with.push(ms)
        } else {
            without.push(ms)
        }
    }
    // Every batch is on the standby once its commit returned (the default connection's).
    drop((both, local));
    let (w, wo) = (percentile(&mut with, 0.5), percentile(&mut without, 0.5));
    out["standby_batches"] = batches.into();
    out["standby_batch_500_p50_ms"] = w.into();
    out["standby_batch_500_primary_only_p50_ms"] = wo.into();
    out["standby_second_copy_ms_per_batch"] = (w - wo).into();
    out["standby_vs_primary_only_ratio"] = (w / wo).into();
    standby.stop();
    primary.stop();
    let _ = std::fs::remove_dir_all(&root);
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
