//! Crash safety: `sealbox add` killed with SIGKILL at random moments never loses an entry whose
//! command reported success, and never leaves a damaged database.

use sealbox_device::{Device, OsKeychain};
use sealbox_protocol::entry::PayloadPlaintext;
use sealbox_tests::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const TRIALS: usize = 200;

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_entry() {
    let sb = Sandbox::enrolled();
    let mut rng = Rng::from_time();
    // How long one `add` takes here, to spread the kills over its whole life.
    let t = Instant::now();
    sb.add(&crate::store::canary_entry(0));
    let span_us = (t.elapsed().as_micros() as u64).max(2_000) * 3 / 2;

    let mut acknowledged: HashSet<String> = HashSet::new();
    let (mut killed, mut finished) = (0, 0);
    let nd = sb.tmp.path().join("three.ndjson");
    std::fs::write(
        &nd,
        (0..3)
            .map(crate::store::canary_entry)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    for trial in 0..TRIALS {
        let (mut cmd, input) = if trial % 4 == 3 {
            (sb.dev_cmd(&["add", "--ndjson", nd.to_str().unwrap()]), None)
        } else {
            (
                sb.dev_cmd(&["add", "--json", "-"]),
                Some(crate::store::canary_entry(trial)),
            )
        };
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        {
            // The entry goes in at once and stdin closes; the kill lands wherever add is.
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            if let Some(entry) = input {
                let _ = stdin.write_all(entry.as_bytes());
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(span_us)));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            finished += 1;
            for id in String::from_utf8(out.stdout).unwrap().lines() {
                acknowledged.insert(id.to_string());
            }
        } else {
            killed += 1;
        }
    }
    eprintln!(
        "{TRIALS} trials: {killed} killed, {finished} finished, {} entries acknowledged",
        acknowledged.len()
    );
    assert!(
        killed >= TRIALS / 10,
        "the kills must land while add runs ({killed} of {TRIALS})"
    );
    assert!(finished >= 1, "some adds must finish ({finished})");

    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    assert!(dev.integrity_ok().unwrap(), "PRAGMA integrity_check");
    let envs = dev.pending_envelopes(100_000).unwrap();
    let stored: HashSet<String> = envs.iter().map(|e| e.id.to_string()).collect();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "entries reported as stored but lost: {lost:?}"
    );
    // Every stored row is whole: head office can open each payload and it matches its envelope.
    let identity = sb.ho_identity();
    for e in &envs {
        let plain = age::decrypt(&identity, &e.sealed).expect("a whole sealed payload");
        let p: PayloadPlaintext = serde_json::from_slice(&plain).unwrap();
        assert!(p.matches(e));
    }
    assert!(dev.audit_verify().unwrap().ok());
}
