//! Head office on PostgreSQL in the tests: the private cluster `cargo xtask test` starts
//! (`SEALBOX_TEST_PG_URL`), a fresh database for each test, and clusters of a test's own (the
//! standby test) from the same Debian package (`SEALBOX_TEST_PG_BIN`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

thread_local! {
    /// Whether the current test runs head office on PostgreSQL ([`on_postgres`]).
    static ON_POSTGRES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current test runs head office on PostgreSQL: each [`crate::Sandbox`] it makes
/// then gets a database of its own, named in its head office's `config.toml`.
pub fn active() -> bool {
    ON_POSTGRES.with(|a| a.get())
}

/// The PostgreSQL database head office in `ho_dir` runs on (its `config.toml`'s
/// `database_url`), if any.
pub fn url_of(ho_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(ho_dir.join("config.toml")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("database_url = "))
        .and_then(|v| serde_json::from_str::<String>(v).ok())
}

/// The `config.toml` of a head office on `url`: the defaults and the database.
pub fn config_for(url: &str) -> String {
    format!(
        "{}\ndatabase_url = {}\n",
        sealbox_headoffice::config::DEFAULT_CONFIG,
        serde_json::to_string(url).unwrap()
    )
}

/// Whether head office made its schema in the database at `url`.
pub fn has_schema(url: &str) -> bool {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query_one(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_name = 'sealbox_schema')",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The private cluster's URL (its `postgres` database), or a loud failure.
pub fn admin_url() -> String {
    std::env::var("SEALBOX_TEST_PG_URL")
        .expect("the PostgreSQL tests need the private cluster: run them with `cargo xtask test`")
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL");
    format!("{base}/{db}")
}

/// A new, empty database on the private cluster, dropped when this is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let admin = admin_url();
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("the test cluster");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        TestDb {
            url: with_database(&admin, &name),
            name,
        }
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("the test database")
    }
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Runs `test` with head office on PostgreSQL, a fresh database for each sandbox: the same
/// test as on the embedded database, on the other backend.
pub fn on_postgres(test: fn()) {
    ON_POSTGRES.with(|a| a.set(true));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_POSTGRES.with(|a| a.set(false));
        }
    }
    let _reset = Reset;
    test();
}

/// The PostgreSQL server's tools (`initdb`, `pg_ctl`, `pg_basebackup`).
pub fn bin_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("SEALBOX_TEST_PG_BIN").expect(
            "the PostgreSQL tests need the server's tools: run them with `cargo xtask test`",
        ),
    )
}

/// `tool` run as the `postgres` system user (PostgreSQL refuses to run as root).
pub fn as_postgres(tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin_dir().join(tool));
    c
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster of a test's own, in `root`, owned by the `postgres` user.
pub struct Cluster {
    pub root: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    running: bool,
}

impl Cluster {
    /// Makes `root` (and its parents inside a temp directory) reachable and writable by the
    /// `postgres` user.
    pub fn prepare(root: &Path) {
        std::fs::create_dir_all(root).unwrap();
        let mut p = root.to_path_buf();
        // Temp directories are 0700: let the postgres user through to its own directory.
        while let Some(parent) = p.parent() {
            if parent == Path::new("/") || parent.as_os_str().is_empty() {
                break;
            }
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(parent) {
                let mode = m.permissions().mode();
                if mode & 0o001 == 0 {
                    let _ = std::fs::set_permissions(
                        parent,
                        std::fs::Permissions::from_mode(mode | 0o001),
                    );
                }
            }
            p = parent.to_path_buf();
        }
        assert!(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(root)
            .status()
            .unwrap()
            .success());
    }

    /// A new primary with `extra` lines in its config.
    pub fn init(root: &Path, extra: &str) -> Cluster {
        Cluster::prepare(root);
        let data = root.join("data");
        let st = as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "initdb");
        let c = Cluster {
            root: root.to_path_buf(),
            data,
            port: free_port(),
            running: false,
        };
        c.configure(extra);
        c
    }

    /// A standby of `primary`, copied with `pg_basebackup` (streaming, `standby.signal`
    /// written), named `name` to the primary.
    pub fn standby_of(primary: &Cluster, root: &Path, name: &str) -> Cluster {
        Cluster::prepare(root);
        let data = root.join("data");
        let st = as_postgres("pg_basebackup")
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p"])
            .arg(primary.port.to_string())
            .args(["-U", "postgres", "-X", "stream", "-R", "--no-sync"])
            .status()
            .unwrap();
        assert!(st.success(), "pg_basebackup");
        let c = Cluster {
            root: root.to_path_buf(),
            data,
            port: free_port(),
            running: false,
        };
        c.configure("");
        // pg_basebackup -R wrote its own primary_conninfo to postgresql.auto.conf, read last:
        // the standby's name goes there.
        use std::io::Write;
        write!(
            std::fs::OpenOptions::new()
                .append(true)
                .open(c.data.join("postgresql.auto.conf"))
                .unwrap(),
            "\nprimary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={name}'\n",
            primary.port
        )
        .unwrap();
        c
    }

    fn configure(&self, extra: &str) {
        use std::io::Write;
        let sock = self.root.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&sock)
            .status()
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .unwrap();
        write!(
            f,
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nmax_connections = 100\n{extra}",
            self.port,
            sock.display()
        )
        .unwrap();
    }

    pub fn start(&mut self) {
        let st = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "pg_ctl start: see {}",
            self.root.join("log").display()
        );
        self.running = true;
    }

    /// The primary's process, killed at once (SIGKILL): as when its machine dies.
    pub fn kill(&mut self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap();
        let pid = pid.lines().next().unwrap().trim().to_string();
        assert!(Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success());
        // Its backends end when they notice the postmaster is gone.
        std::thread::sleep(std::time::Duration::from_millis(500));
        self.running = false;
    }

    pub fn promote(&self) {
        let st = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "promote"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "pg_ctl promote");
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn stop(&mut self) {
        if self.running {
            let _ = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .status();
            self.running = false;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Head office's store on the database at `url` with the event `event` (its config JSON) and
/// `devices` enrolled in it, each device's token hash its name: for the tests and benchmarks
/// that call the store directly.
pub fn store_with(
    url: &str,
    event: &str,
    config: &str,
    devices: &[&str],
) -> sealbox_headoffice::store::Store {
    use sealbox_headoffice::store::{Audit, NewDevice, Store};
    let mut s = Store::open_url(url).unwrap();
    s.add_event(
        event,
        config,
        0,
        Audit::new(1, "event.created", serde_json::json!({})),
    )
    .unwrap();
    for name in devices {
        let d = NewDevice {
            name,
            event_id: event,
            token_sha256: name,
            verifying_key: "k",
            enrolled_at_ms: 0,
        };
        s.add_device(&d, Audit::new(1, "device.enrolled", serde_json::json!({})))
            .unwrap();
    }
    s
}

/// The example event's config as head office stores it.
pub fn example_config() -> String {
    let text =
        std::fs::read_to_string(crate::workspace().join("examples/trade-show.json")).unwrap();
    serde_json::to_string(&sealbox_protocol::EventConfig::from_json(&text).unwrap()).unwrap()
}
