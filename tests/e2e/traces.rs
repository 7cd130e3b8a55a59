//! What a visitor's values leave around the database: the shell's history and the process list
//! (values are never arguments).

use sealbox_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A canary no other process on this machine carries (other test runs share the fixed ones).
fn unique_canary(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("Qz{tag}{}x{nanos}", std::process::id())
}

fn entry_with_name(name: &str) -> String {
    serde_json::json!({
        "name": name,
        "phone": "13977770123",
        "company": "Qzcanary Widgets",
        "consent": true
    })
    .to_string()
}

/// The `sealbox --data-dir dev add …` lines of the README's tour, without their comments.
fn documented_add_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("sealbox --data-dir dev add "))
        .map(|l| l.split(" # ").next().unwrap().trim().to_string())
        .collect()
}

/// Runs `script` in an interactive bash (history on, saved to `histfile` at exit) in `cwd`, with
/// the workspace's binaries first on PATH. Returns (stdout, stderr).
fn interactive_bash(sb: &Sandbox, cwd: &Path, histfile: &Path, script: &str) -> (String, String) {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.args(["--norc", "--noprofile", "-i"])
        .current_dir(cwd)
        .env("PATH", path)
        .env("HISTFILE", histfile)
        .env("HISTSIZE", "1000")
        .env("HISTFILESIZE", "1000")
        .env_remove("HISTCONTROL")
        .env_remove("HISTIGNORE")
        .env("TMPDIR", &sb.tmpdir)
        .env("LANG", "C.UTF-8")
        .env_remove("SEALBOX_LANG")
        .env_remove("SEALBOX_DATA_DIR")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES");
    let out = with_stdin(c, &format!("{script}\nexit\n"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The README's commands for adding entries, typed into an interactive shell with history on:
/// the values reach the store and never the history. The old form (the entry as an argument) is
/// caught by the same check, and refused without storing or repeating it.
#[test]
fn documented_add_commands_leave_no_value_in_shell_history() {
    let sb = Sandbox::enrolled();
    let commands = documented_add_commands();
    assert!(
        commands.iter().any(|c| c.contains("--json"))
            && commands.iter().any(|c| c.contains("--ndjson"))
            && commands.iter().any(|c| c.contains(" - <")),
        "the README documents adding one entry and many: {commands:?}"
    );
    let name = unique_canary("hist");
    let work = sb.tmp.path().join("shell");
    std::fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::symlink(&sb.dev, work.join("dev")).unwrap();
    // The README's example files, with this test's values.
    std::fs::create_dir_all(work.join("examples")).unwrap();
    std::fs::write(
        work.join("examples/entry.json"),
        entry_with_name(&format!("{name}1")),
    )
    .unwrap();
    std::fs::write(
        work.join("examples/paper-forms.ndjson"),
        format!(
            "{}\n{}\n",
            entry_with_name(&format!("{name}2")),
            entry_with_name(&format!("{name}3"))
        ),
    )
    .unwrap();
    let history = work.join("history");
    let (out, err) = interactive_bash(&sb, &work, &history, &commands.join("\n"));
    let stored: usize = commands
        .iter()
        .map(|c| if c.contains("--ndjson") { 2 } else { 1 })
        .sum();
    assert_eq!(
        out.lines().count(),
        stored,
        "one id per entry: {out}\n{err}"
    );
    assert_eq!(sb.pending(), stored as u64);
    // History was on and recorded the commands: the check below looks at a real history.
    let hist = std::fs::read_to_string(&history).expect("bash saved its history");
    for c in &commands {
        assert!(
            hist.contains(c.as_str()),
            "{c:?} not in the history: {hist}"
        );
    }
    assert!(!hist.contains(&name), "a value reached the history: {hist}");
    assert!(
        !hist.lines().any(|l| l.contains("{\"")),
        "an entry was typed as an argument: {hist}"
    );
    assert!(!hist.contains("Qzcanary"), "{hist}");

    // The old way, an entry as an argument: the history catches it (so the check above would
    // have), and sealbox refuses it in one line without storing or repeating it.
    let old_history = work.join("history-old");
    let old = format!(
        "sealbox --data-dir dev add --json '{}' 2> refused.txt; echo \"exit $?\"",
        entry_with_name(&format!("{name}9"))
    );
    let (out, _) = interactive_bash(&sb, &work, &old_history, &old);
    assert!(out.contains("exit 2"), "refused as a usage error: {out}");
    let hist = std::fs::read_to_string(&old_history).unwrap();
    assert!(hist.contains(&format!("{name}9")), "{hist}");
    let refused = std::fs::read_to_string(work.join("refused.txt")).unwrap();
    assert_eq!(refused.trim_end().lines().count(), 1, "{refused}");
    assert!(
        refused.starts_with("error: ") && refused.contains("add --json - < entry.json"),
        "{refused}"
    );
    assert!(!refused.contains(&name), "{refused}");
    assert_eq!(sb.pending(), stored as u64, "nothing stored");
    // In Chinese too, and for `--json=…` and a stray positional argument alike.
    for args in [
        vec!["add".to_string(), "--json".into(), entry_with_name(&name)],
        vec!["add".into(), format!("--json={}", entry_with_name(&name))],
        vec![
            "add".into(),
            "--ndjson".into(),
            "-".into(),
            entry_with_name(&name),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb
            .dev_cmd(&args)
            .env("SEALBOX_LANG", "zh")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("不能作为命令行参数"), "{err}");
        assert!(!err.contains(&name), "{err}");
    }
    assert_eq!(sb.pending(), stored as u64);
}

/// Every process's command line on this machine, as any local user can read it.
fn process_list() -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let p = e.path().join("cmdline");
            std::fs::read(&p).ok().map(|b| (p, b))
        })
        .collect()
}

fn processes_showing(needle: &str) -> Vec<PathBuf> {
    process_list()
        .into_iter()
        .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(p, _)| p)
        .collect()
}

/// While `sealbox add --json -` runs (here: waiting for the rest of its stdin), no process's
/// command line shows the value. A process that does carry it in argv is found by the same scan.
#[test]
fn a_running_add_shows_no_value_in_the_process_list() {
    let sb = Sandbox::enrolled();
    let name = unique_canary("proc");
    // The scan finds a value that is in some process's arguments.
    // (`; true` keeps sh itself alive, holding the value in its argv, while sleep runs.)
    let mut control = Command::new("sh")
        .args(["-c", "sleep 30; true", &name])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_showing(&name).is_empty() {
        assert!(Instant::now() < deadline, "the scan does not see argv");
        std::thread::sleep(Duration::from_millis(20));
    }
    control.kill().unwrap();
    control.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_showing(&name).is_empty() {
        assert!(Instant::now() < deadline, "the control process is gone");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut child = sb
        .dev_cmd(&["add", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let entry = entry_with_name(&name);
    let (head, tail) = entry.split_at(entry.find(&name).unwrap() + name.len());
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(head.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let cmdline = PathBuf::from(format!("/proc/{}/cmdline", child.id()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read(&cmdline).is_ok_and(|b| b.windows(3).any(|w| w == b"add")) {
        assert!(Instant::now() < deadline, "sealbox add did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // It has read the value's first half and waits for the rest.
    wait_blocked_on_stdin(child.id());
    assert!(child.try_wait().unwrap().is_none(), "add is still running");
    let shown = processes_showing(&name);
    assert!(shown.is_empty(), "the value is in {shown:?}");
    {
        use std::io::Write;
        stdin.write_all(tail.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sb.pending(), 1);
}

/// Whether the kernel writes core files itself (`core_pattern` is a file name, not a pipe to a
/// handler such as systemd-coredump or apport).
pub fn cores_are_files() -> bool {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    !pattern.trim_start().starts_with('|')
}

/// `cmd` run through bash with the core size limit raised first, as a user with `ulimit -c
/// unlimited` in their profile would start it.
pub fn with_cores_allowed(cmd: Command) -> Command {
    let mut b = Command::new("bash");
    b.args(["-c", "ulimit -c unlimited && exec \"$@\"", "bash"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        b.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => b.env(k, v),
            None => b.env_remove(k),
        };
    }
    b
}

/// The control: a process that holds `canary` in memory and aborts, started the same way in
/// `dir`, leaves a core file there that holds it. Returns false (after saying so) where cores go
/// to a handler instead of a file.
pub fn a_core_file_would_catch(dir: &Path, canary: &str) -> bool {
    if !cores_are_files() {
        eprintln!("core_pattern is a pipe here: core files are checked through the limits only");
        return false;
    }
    std::fs::create_dir_all(dir).unwrap();
    let mut c = Command::new("sh");
    c.args(["-c", "read v; kill -ABRT $$"]).current_dir(dir);
    let out = with_stdin(with_cores_allowed(c), &format!("{canary}\n"));
    assert!(!out.status.success());
    let hits = files_containing(dir, canary);
    assert!(
        !hits.is_empty(),
        "the control process left no core holding its value in {}",
        dir.display()
    );
    for h in hits {
        std::fs::remove_file(h).unwrap();
    }
    true
}

/// The soft and hard core size limits of a process, as /proc shows them.
pub fn core_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[4].to_string(), f[5].to_string())
}

/// Sends SIGABRT (which dumps core by default) and waits until the process is gone or a zombie.
pub fn abort_and_wait(pid: u32) {
    let st = Command::new("kill")
        .args(["-ABRT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let gone = state.is_empty()
            || state
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X']));
        if gone {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files named like core files in `dir`.
pub fn core_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("core"))
        })
        .collect()
}

/// `sealbox add` aborted while it holds a visitor's value (read from stdin, not yet stored),
/// started with core files allowed: no core file, its limit reads 0. A plain process started the
/// same way does leave a core holding its value.
#[test]
fn a_crashing_sealbox_leaves_no_core_file() {
    let sb = Sandbox::enrolled();
    let name = unique_canary("core");
    let control = sb.tmp.path().join("control");
    let cores = a_core_file_would_catch(&control, &format!("{name}control"));

    let cwd = sb.tmp.path().join("crash");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut cmd = sb.dev_cmd(&["add", "--json", "-"]);
    cmd.current_dir(&cwd);
    let mut child = with_cores_allowed(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let entry = entry_with_name(&name);
    let head = &entry[..entry.find(&name).unwrap() + name.len()];
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(head.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    // It has read the value and waits for the rest.
    wait_blocked_on_stdin(child.id());
    assert!(child.try_wait().unwrap().is_none());
    let limits = core_limits(child.id());
    abort_and_wait(child.id());
    drop(stdin);
    let st = child.wait().unwrap();
    assert!(!st.success());
    if cores {
        assert!(core_files(&cwd).is_empty(), "{:?}", core_files(&cwd));
    }
    let hits = files_containing(sb.tmp.path(), &name);
    assert!(hits.is_empty(), "{hits:?}");
    assert_eq!(
        limits,
        ("0".into(), "0".into()),
        "sealbox lowers the limit it was started with"
    );
    assert_eq!(sb.pending(), 0);
}
