//! A private PostgreSQL cluster for the tests: Debian's `postgresql` package, a data directory
//! under `target/xtask/pg/`, a Unix socket directory beside it and a free port on 127.0.0.1,
//! run as the package's `postgres` system user (PostgreSQL refuses to run as root), stopped at
//! the end of the run. The tests get its URL in `SEALBOX_TEST_PG_URL` and create a database
//! each, so they stay parallel.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian's PostgreSQL (the server, its tools, and the `postgres` system user).
pub(crate) const PG_PACKAGES: &[&str] = &["postgresql"];

/// The newest installed server's `bin` directory (`/usr/lib/postgresql/N/bin`).
pub(crate) fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql)")?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .context("no PostgreSQL server under /usr/lib/postgresql")
}

/// A running cluster.
pub(crate) struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    pub(crate) url: String,
}

/// `cmd` run as the `postgres` user.
fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    /// A fresh cluster in `root` (wiped first).
    pub(crate) fn start(root: &Path) -> Result<Cluster> {
        let bin = bin_dir()?;
        if root.exists() {
            // A cluster left by a run that was killed: stop it before wiping its files.
            let _ = as_postgres(&bin, "pg_ctl")
                .arg("-D")
                .arg(root.join("data"))
                .args(["-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            std::fs::remove_dir_all(root)?;
        }
        let root = std::path::absolute(root)?;
        let (data, sock) = (root.join("data"), root.join("sock"));
        std::fs::create_dir_all(&sock)?;
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&root)
            .status()?;
        if !st.success() {
            bail!("chown of {} failed", root.display());
        }
        let st = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .context("initdb")?;
        if !st.success() {
            bail!("initdb failed");
        }
        let port = free_port()?;
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 400\nshared_buffers = 64MB\nfsync = on\n",
            sock.display()
        );
        {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))?
                .write_all(conf.as_bytes())?;
        }
        let st = as_postgres(&bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(root.join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .context("pg_ctl start")?;
        if !st.success() {
            bail!(
                "PostgreSQL did not start: see {}",
                root.join("log").display()
            );
        }
        Ok(Cluster {
            bin,
            data,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        })
    }

    /// Stops the cluster (fast shutdown).
    pub(crate) fn stop(&self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
