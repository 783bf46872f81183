//! A throw-away PostgreSQL cluster on a free port, for tests that crash or
//! restart the server (never the machine's shared one, which other tests
//! use at the same time). `pg_createcluster` and `pg_ctlcluster` run the
//! server as `postgres`, so this works as root, where `initdb` refuses.

use std::process::Command;

/// A private cluster, dropped (stopped and deleted) with the value.
pub struct Cluster {
    version: String,
    name: String,
    port: u16,
}

fn run(command: &mut Command) {
    let output = command.output().expect("the PostgreSQL tools run");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    /// Creates and starts a cluster named after `purpose`, with extra
    /// server settings (`name=value`).
    pub fn create(purpose: &str, settings: &[&str]) -> Cluster {
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's Debian packages (pg_createcluster)")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .max_by_key(|version| version.parse::<u32>().unwrap_or(0))
            .expect("a PostgreSQL version");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let name = format!("{purpose}_{}_{port}", std::process::id());
        let cluster = Cluster {
            version,
            name,
            port,
        };
        let mut create = Command::new("pg_createcluster");
        create
            .args([&cluster.version, &cluster.name])
            .args(["-p", &port.to_string()]);
        for setting in settings {
            create.args(["-o", setting]);
        }
        run(create.args(["--", "--auth=trust"]));
        cluster.start();
        cluster
    }

    fn ctl(&self, action: &[&str]) {
        run(Command::new("pg_ctlcluster")
            .arg("--skip-systemctl-redirect")
            .args([&self.version, &self.name])
            .args(action));
    }

    pub fn start(&self) {
        self.ctl(&["start"]);
    }

    /// An orderly restart (fast shutdown: connections are ended).
    pub fn restart(&self) {
        self.ctl(&["restart", "-m", "fast"]);
    }

    /// What a crash looks like: no checkpoint, no flush, connections cut.
    pub fn crash(&self) {
        self.ctl(&["stop", "-m", "immediate"]);
    }

    /// `127.0.0.1:<port>`, for a relay in front of the cluster.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database` in the cluster.
    pub async fn create_database(&self, database: &str) {
        let admin = sqlx::PgPool::connect(&self.url("postgres"))
            .await
            .expect("the private cluster answers");
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&admin)
            .await
            .expect("a database");
        admin.close().await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", &self.version, &self.name])
            .output();
    }
}
