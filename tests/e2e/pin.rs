//! The manager PIN's rate limit holds against many processes at once and against a clock moved
//! either way (faketime: Debian's `faketime`, which `cargo xtask test` installs).

use sealbox_tests::*;
use std::process::{Command, Output};

/// `cmd` run under faketime with the clock moved by `offset` (`-1d`, `+1d`).
fn faked(cmd: Command, offset: &str) -> Command {
    let mut f = Command::new("faketime");
    f.args(["-f", offset])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => f.env(k, v),
            None => f.env_remove(k),
        };
    }
    f
}

fn list(sb: &Sandbox, pin: &str, clock: Option<&str>) -> Output {
    let mut c = sb.dev_cmd(&["list"]);
    c.env("SEALBOX_PIN", pin);
    let mut c = match clock {
        Some(offset) => faked(c, offset),
        None => c,
    };
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Three wrong PINs, each refused as wrong.
fn three_misses(sb: &Sandbox, clock: Option<&str>) {
    for i in 0..3 {
        let out = list(sb, &format!("99990{i}"), clock);
        assert!(stderr(&out).contains("wrong PIN"), "{}", stderr(&out));
    }
}

/// The wait a refusal names, in seconds.
fn refused_for(out: &Output) -> u64 {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    err.split("try again in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a wait: {err}"))
}

/// Eight `sealbox list` processes guessing at once get three guesses between them, not eight.
#[test]
fn parallel_processes_share_three_guesses() {
    let sb = Sandbox::enrolled();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut c = sb.dev_cmd(&["list"]);
            c.env("SEALBOX_PIN", format!("9999{i:02}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let errs: Vec<String> = children
        .into_iter()
        .map(|c| stderr(&c.wait_with_output().unwrap()))
        .collect();
    let wrong = errs
        .iter()
        .filter(|e| e.trim() == "error: wrong PIN")
        .count();
    let waited = errs.iter().filter(|e| e.contains("try again in")).count();
    assert_eq!((wrong, waited), (3, 5), "{errs:#?}");
    let dev = sealbox_device::Device::open(&sb.dev, &sealbox_device::OsKeychain).unwrap();
    let failed = dev
        .audit_recent(100)
        .unwrap()
        .iter()
        .filter(|r| r.action == "pin.failed")
        .count();
    assert_eq!(failed, 3);
}

/// Wrong PINs made under a clock set back a day, then the clock put right; or a clock moved a
/// day forward after them: either way the wait stands. A clock set back after them does not
/// stretch the wait beyond its 30 s, and once those have passed the right PIN gets in.
#[test]
fn a_clock_moved_either_way_never_shortens_a_wait() {
    let sb = Sandbox::enrolled();
    three_misses(&sb, Some("-1d"));
    assert!(refused_for(&list(&sb, PIN, None)) > 0);

    let sb = Sandbox::enrolled();
    three_misses(&sb, None);
    assert!(refused_for(&list(&sb, PIN, Some("+1d"))) > 0);
    assert!(refused_for(&list(&sb, PIN, Some("+400d"))) > 0);
    let back = refused_for(&list(&sb, PIN, Some("-1d")));
    assert!(
        back <= 30,
        "a clock set back locks the manager out for {back} s"
    );
    std::thread::sleep(std::time::Duration::from_secs(31));
    let out = list(&sb, PIN, Some("-1d"));
    assert!(out.status.success(), "{}", stderr(&out));
}
