//! The model-based test: random sequences of real operations against real parts (SQLCipher
//! files, the OS keychain, a real `sealbox-headoffice serve` over TLS behind the fault proxy),
//! with the lifecycle's invariants checked after every step. A failing sequence is shrunk by
//! proptest to a short one and printed as the steps to replay.
//!
//! `cargo xtask test` runs a bounded number of sequences; `SEALBOX_MODEL_CASES=N` (and
//! `SEALBOX_MODEL_STEPS=M`) run a longer soak.

use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use sealbox_device::{Device, OsKeychain};
use sealbox_tests::proxy::{Fault, FaultProxy};
use sealbox_tests::server::HoServer;
use sealbox_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// One step a person could replay by hand.
#[derive(Debug, Clone)]
pub enum Step {
    /// A visitor submits at the kiosk (the app's path: `Kiosk::submit`).
    KioskAdd,
    /// `sealbox add --ndjson -` with this many entries.
    CliAdd(usize),
    /// `sealbox sync --page P`.
    Sync { page: usize },
    /// One round of the app's background sync (the library's `Device::sync`).
    LoopRound,
    /// `sealbox export --out NEW_FILE`.
    Export,
    /// `sealbox-headoffice import FILE` of the n-th batch file (modulo how many exist).
    Import(usize),
    /// `sealbox receipt import` of the n-th receipt file (modulo how many exist).
    ReceiptImport(usize),
    /// SIGTERM head office and start it again.
    HoRestart,
    /// SIGKILL head office and start it again.
    HoKill,
    /// `sealbox sync` killed with SIGKILL after this many milliseconds.
    DeviceKillDuringSync(u64),
    /// Head office restarted with at most this many entries per batch.
    SetLimit(usize),
    /// The next connection fails this way.
    Network(NetFault),
    /// `sealbox add --ndjson -` with this many entries, killed with SIGKILL after this many
    /// milliseconds (its entries may or may not be stored; none was promised to a visitor).
    DeviceKillDuringAdd(usize, u64),
    /// `sealbox-headoffice forget --phone` of the n-th visitor (modulo how many exist).
    Forget(usize),
    /// `sealbox-headoffice forget --email` of the n-th visitor (modulo how many exist).
    ForgetEmail(usize),
    /// `sealbox-headoffice purge` with head office's clock 400 days ahead.
    PurgeLater,
    /// `sealbox-headoffice device revoke` (the device was reported lost): its syncs get 401 from
    /// now on; its batch files are imported with `--accept-revoked`, deliberately.
    Revoke,
}

#[derive(Debug, Clone, Copy)]
pub enum NetFault {
    /// The connection is dropped before the request reaches head office.
    DropBeforeRequest,
    /// Head office stores the batch, then the receipt is lost.
    LoseReceipt,
    /// Half the receipt arrives.
    TruncateReceipt,
}

/// The reference model only drives generation: what happened is tracked on the real side.
pub struct Model;

impl ReferenceStateMachine for Model {
    type State = ();
    type Transition = Step;

    fn init_state() -> BoxedStrategy<()> {
        Just(()).boxed()
    }

    fn transitions(_: &()) -> BoxedStrategy<Step> {
        prop_oneof![
            6 => Just(Step::KioskAdd),
            4 => (1usize..5).prop_map(Step::CliAdd),
            6 => (1usize..8).prop_map(|page| Step::Sync { page }),
            2 => Just(Step::LoopRound),
            2 => Just(Step::Export),
            2 => (0usize..8).prop_map(Step::Import),
            2 => (0usize..8).prop_map(Step::ReceiptImport),
            1 => Just(Step::HoRestart),
            1 => Just(Step::HoKill),
            2 => (0u64..400).prop_map(Step::DeviceKillDuringSync),
            1 => (1usize..4).prop_map(Step::SetLimit),
            3 => prop_oneof![
                Just(NetFault::DropBeforeRequest),
                Just(NetFault::LoseReceipt),
                Just(NetFault::TruncateReceipt)
            ]
            .prop_map(Step::Network),
            1 => ((1usize..20), (0u64..300)).prop_map(|(n, ms)| Step::DeviceKillDuringAdd(n, ms)),
            2 => (0usize..16).prop_map(Step::Forget),
            1 => (0usize..16).prop_map(Step::ForgetEmail),
            1 => Just(Step::PurgeLater),
            1 => Just(Step::Revoke),
        ]
        .boxed()
    }

    fn apply(state: (), _: &Step) {
        state
    }
}

/// The real system and what it has told the world.
pub struct World {
    sb: Sandbox,
    server: HoServer,
    proxy: FaultProxy,
    /// Every entry a visitor was told is saved, with the visitor's number.
    acked: BTreeMap<Uuid, usize>,
    /// Every id head office deleted (deletion request or purge): never to be stored again.
    deleted: BTreeSet<Uuid>,
    batch_files: Vec<PathBuf>,
    receipts: Vec<PathBuf>,
    visitors: usize,
    revoked: bool,
    steps: Vec<String>,
}

const CANARY: &str = "Qzmodel";

fn visitor_values(n: usize) -> serde_json::Value {
    serde_json::json!({
        "name": format!("{CANARY} Visitor {n}"),
        "phone": format!("137{:08}", n),
        "company": format!("{CANARY} Widgets"),
        "email": format!("qzmodel.{n}@example.com"),
        "consent": true
    })
}

impl World {
    fn new() -> World {
        let sb = Sandbox::headoffice();
        let server = HoServer::start(&sb.ho, &[]);
        let proxy = FaultProxy::start(server.addr);
        sb.enrol_at(&proxy.url());
        World {
            sb,
            server,
            proxy,
            acked: BTreeMap::new(),
            deleted: BTreeSet::new(),
            batch_files: Vec::new(),
            receipts: Vec::new(),
            visitors: 0,
            revoked: false,
            steps: Vec::new(),
        }
    }

    fn ho_conn(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.sb.ho.join("headoffice.db")).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    fn ids(conn: &rusqlite::Connection, sql: &str) -> BTreeSet<Uuid> {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(|r| Uuid::parse_str(&r.unwrap()).unwrap())
            .collect()
    }

    /// Head office's ids: (held as entries, quarantined, tombstoned).
    fn ho_ids(&self) -> (BTreeSet<Uuid>, BTreeSet<Uuid>, BTreeSet<Uuid>) {
        let c = self.ho_conn();
        (
            Self::ids(&c, "SELECT id FROM entries"),
            Self::ids(&c, "SELECT id FROM quarantine"),
            Self::ids(&c, "SELECT id FROM tombstones"),
        )
    }

    /// The device's ids: (on the device, erased with a tombstone).
    fn device_ids(&self) -> (BTreeSet<Uuid>, BTreeSet<Uuid>) {
        let dev = Device::open(&self.sb.dev, &OsKeychain).unwrap();
        let c = dev.connection();
        (
            Self::ids(c, "SELECT id FROM entries"),
            Self::ids(c, "SELECT id FROM tombstones"),
        )
    }

    fn remember_deletions(&mut self, before: &BTreeSet<Uuid>) {
        let (held, _, tombs) = self.ho_ids();
        for id in before.difference(&held) {
            assert!(
                tombs.contains(id),
                "{id} left head office without a tombstone"
            );
            self.deleted.insert(*id);
        }
    }

    fn apply(&mut self, step: Step) {
        self.steps.push(format!("{step:?}"));
        match step {
            Step::KioskAdd => {
                let n = self.visitors;
                self.visitors += 1;
                let mut kiosk =
                    sealbox_device::kiosk::Kiosk::without_sync(&self.sb.dev, Arc::new(OsKeychain));
                let id = kiosk
                    .submit(&visitor_values(n))
                    .expect("the kiosk stores an entry");
                self.acked.insert(Uuid::parse_str(&id).unwrap(), n);
            }
            Step::CliAdd(k) => {
                let lines: Vec<String> = (0..k)
                    .map(|i| visitor_values(self.visitors + i).to_string())
                    .collect();
                let mut child = self
                    .sb
                    .dev_cmd(&["add", "--ndjson", "-"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                {
                    use std::io::Write;
                    let mut stdin = child.stdin.take().unwrap();
                    stdin.write_all(lines.join("\n").as_bytes()).unwrap();
                }
                let out = child.wait_with_output().unwrap();
                let text = ok(out, &["add", "--ndjson", "-"]);
                let ids: Vec<Uuid> = text
                    .lines()
                    .map(|l| Uuid::parse_str(l.trim()).unwrap())
                    .collect();
                assert_eq!(ids.len(), k);
                for (i, id) in ids.into_iter().enumerate() {
                    self.acked.insert(id, self.visitors + i);
                }
                self.visitors += k;
            }
            Step::Sync { page } => {
                // A refusal or a fault may fail it; the invariants say whether that was safe.
                let _ = self
                    .sb
                    .dev_cmd(&["sync", "--page", &page.to_string(), "--timeout", "5"])
                    .output()
                    .unwrap();
            }
            Step::LoopRound => {
                let mut dev = Device::open(&self.sb.dev, &OsKeychain).unwrap();
                if let Ok(client) = dev.sync_client(Duration::from_secs(5)) {
                    let _ = dev.sync(&client, sealbox_device::sync::DEFAULT_PAGE, &mut |_| {});
                }
            }
            Step::Export => {
                let out = self
                    .sb
                    .tmp
                    .path()
                    .join(format!("b{}.sealbox-batch", self.batch_files.len()));
                let res = self
                    .sb
                    .dev_cmd(&["export", "--out", out.to_str().unwrap()])
                    .output()
                    .unwrap();
                if res.status.success() {
                    self.batch_files.push(out);
                } else {
                    let err = String::from_utf8_lossy(&res.stderr);
                    assert!(err.contains("nothing to export"), "export failed: {err}");
                }
            }
            Step::Import(k) => {
                if self.batch_files.is_empty() {
                    return;
                }
                let file = self.batch_files[k % self.batch_files.len()].clone();
                let receipt = self
                    .sb
                    .tmp
                    .path()
                    .join(format!("r{}.json", self.receipts.len()));
                let before = self.ho_ids().0;
                let mut args = vec![
                    "import",
                    file.to_str().unwrap(),
                    "--receipt-out",
                    receipt.to_str().unwrap(),
                ];
                if self.revoked {
                    args.push("--accept-revoked");
                }
                self.sb.ho_ok(&args);
                self.receipts.push(receipt);
                // An import stores; it never deletes.
                assert!(before.is_subset(&self.ho_ids().0));
            }
            Step::ReceiptImport(k) => {
                if self.receipts.is_empty() {
                    return;
                }
                let r = self.receipts[k % self.receipts.len()].clone();
                let res = self
                    .sb
                    .dev_cmd(&["receipt", "import", r.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert!(
                    res.status.success(),
                    "a genuine receipt applies: {}",
                    String::from_utf8_lossy(&res.stderr)
                );
            }
            Step::HoRestart => {
                self.server.terminate();
                self.server.restart();
            }
            Step::HoKill => {
                self.server.kill();
                self.server.restart();
            }
            Step::DeviceKillDuringSync(ms) => {
                let mut child = self
                    .sb
                    .dev_cmd(&["sync", "--timeout", "5"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(ms));
                let _ = child.kill();
                let _ = child.wait();
            }
            Step::SetLimit(n) => {
                self.server
                    .restart_with(&[("SEALBOX_HO_MAX_ENTRIES_PER_BATCH", &n.to_string())]);
            }
            Step::Network(f) => self.proxy.next(match f {
                NetFault::DropBeforeRequest => Fault::DropBeforeRequest,
                NetFault::LoseReceipt => Fault::DropResponse,
                NetFault::TruncateReceipt => Fault::TruncateResponse(40),
            }),
            Step::Forget(k) => {
                if self.visitors == 0 {
                    return;
                }
                let before = self.ho_ids().0;
                let phone = format!("137{:08}", k % self.visitors);
                self.sb.ho_ok(&["forget", "--phone", &phone]);
                self.remember_deletions(&before);
            }
            Step::DeviceKillDuringAdd(k, ms) => {
                let lines: Vec<String> = (0..k)
                    .map(|i| visitor_values(self.visitors + i).to_string())
                    .collect();
                self.visitors += k;
                let mut child = self
                    .sb
                    .dev_cmd(&["add", "--ndjson", "-"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                {
                    use std::io::Write;
                    let mut stdin = child.stdin.take().unwrap();
                    let _ = stdin.write_all(lines.join("\n").as_bytes());
                }
                std::thread::sleep(Duration::from_millis(ms));
                let _ = child.kill();
                let _ = child.wait();
            }
            Step::ForgetEmail(k) => {
                if self.visitors == 0 {
                    return;
                }
                let before = self.ho_ids().0;
                let email = format!("qzmodel.{}@example.com", k % self.visitors);
                self.sb.ho_ok(&["forget", "--email", &email]);
                self.remember_deletions(&before);
            }
            Step::Revoke => {
                if !self.revoked {
                    self.sb.ho_ok(&["device", "revoke", "booth-1"]);
                    self.revoked = true;
                }
            }
            Step::PurgeLater => {
                let before = self.ho_ids().0;
                self.sb.ho_ok_faketime(&["purge"], "+400d");
                self.remember_deletions(&before);
            }
        }
    }

    fn check(&self) {
        let (held, quarantined, tombs) = self.ho_ids();
        let (on_device, erased) = self.device_ids();
        let at = || self.steps.join(" → ");
        for id in self.acked.keys() {
            assert!(
                on_device.contains(id)
                    || held.contains(id)
                    || quarantined.contains(id)
                    || self.deleted.contains(id),
                "entry {id} is nowhere (lost) after: {}",
                at()
            );
        }
        for id in &erased {
            assert!(
                held.contains(id) || quarantined.contains(id) || tombs.contains(id),
                "entry {id} was erased on the device but head office never held it, after: {}",
                at()
            );
        }
        for id in &self.deleted {
            assert!(
                !held.contains(id),
                "deleted entry {id} came back at head office, after: {}",
                at()
            );
        }
        assert!(
            held.is_disjoint(&quarantined),
            "an entry held twice, after: {}",
            at()
        );
        let dev = Device::open(&self.sb.dev, &OsKeychain).unwrap();
        assert!(
            dev.audit_verify().unwrap().ok(),
            "device audit chain, after: {}",
            at()
        );
        let (_, broken) = sealbox_headoffice::audit::verify(&self.ho_conn()).unwrap();
        assert!(broken.is_none(), "head office audit chain, after: {}", at());
    }

    /// Progress: with the network and head office healthy, every entry still on the device is
    /// delivered within a few syncs; nothing personal is in any file outside the sealed
    /// payloads or in any log.
    fn finish(&mut self) {
        self.proxy.next(Fault::Pass);
        self.server.restart_with(&[]);
        if self.revoked {
            // Revoked: the device's entries reach head office only through a batch file the
            // admin accepts deliberately.
            self.apply(Step::Export);
            if let Some(last) = self.batch_files.len().checked_sub(1) {
                self.apply(Step::Import(last));
                self.apply(Step::ReceiptImport(self.receipts.len() - 1));
            }
        } else {
            for _ in 0..3 {
                let _ = self
                    .sb
                    .dev_cmd(&["sync", "--timeout", "10"])
                    .output()
                    .unwrap();
            }
        }
        let st = self.sb.status();
        assert_eq!(
            (st["pending"].as_u64(), st["exported"].as_u64()),
            (Some(0), Some(0)),
            "entries still waiting after three healthy syncs, after: {}",
            self.steps.join(" → ")
        );
        self.check();
        let (held, quarantined, _) = self.ho_ids();
        for id in self.acked.keys() {
            assert!(held.contains(id) || quarantined.contains(id) || self.deleted.contains(id));
        }
        for canary in [CANARY, "qzmodel.", "13700000"] {
            let leaks = files_containing(self.sb.tmp.path(), canary);
            assert!(leaks.is_empty(), "personal data ({canary}) in {leaks:?}");
        }
    }
}

impl StateMachineTest for World {
    type SystemUnderTest = World;
    type Reference = Model;

    fn init_test(_: &()) -> World {
        World::new()
    }

    fn apply(mut world: World, _: &(), step: Step) -> World {
        world.apply(step);
        world
    }

    fn check_invariants(world: &World, _: &()) {
        world.check();
    }

    fn teardown(mut world: World, _: ()) {
        world.finish();
    }
}

fn cases() -> u32 {
    std::env::var("SEALBOX_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn steps() -> usize {
    std::env::var("SEALBOX_MODEL_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

prop_state_machine! {
    #![proptest_config(Config {
        cases: cases(),
        max_shrink_iters: 200,
        failure_persistence: None,
        verbose: 1,
        .. Config::default()
    })]
    #[test]
    fn the_lifecycle_holds_on_random_paths(sequential 1..steps() => World);
}
