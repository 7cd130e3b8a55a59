//! What the kiosk and the CLI do to their own process before anything else: no core dumps.
//!
//! A crash must not write the process's memory (a visitor's values while they are typed and
//! sealed, the database key, the PIN) to a core file on disk.

/// Turns core dumps off for this process and every process it starts.
///
/// - `RLIMIT_CORE` = 0, soft and hard: the kernel writes no core file. The limit is inherited
///   across fork and exec, so WebKit's web and network processes get it too, and nothing in
///   the process tree can raise it again.
/// - Linux: `PR_SET_DUMPABLE` = 0: no core either where `fs.suid_dumpable` or a core handler
///   behind a pipe (`systemd-coredump`, `apport`) would ignore the limit, and other processes
///   of the same user can no longer attach a debugger or read `/proc/PID/mem`. Exec resets this
///   flag, so WebKit's processes keep only the limit.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use rustix::process::{setrlimit, Resource, Rlimit};
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )?;
    }
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The limit reads back as 0 (run in a child process, since it cannot be raised again).
    #[test]
    fn the_core_limit_reads_back_as_zero() {
        if std::env::var_os("SEALBOX_TEST_CORE_CHILD").is_some() {
            super::forbid_core_dumps().unwrap();
            let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max core file size"))
                .unwrap();
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(&fields[4..6], &["0", "0"], "{line}");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "process::tests::the_core_limit_reads_back_as_zero",
            ])
            .env("SEALBOX_TEST_CORE_CHILD", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
