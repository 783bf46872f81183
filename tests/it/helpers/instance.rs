//! An app instance in a process of its own, so a test can kill it with
//! SIGKILL and start it again: the test binary runs itself with
//! `EVENTSTREAM_IT_INSTANCE` set, and `main` serves instead of testing.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{App, try_spawn_app};

const VARIABLE: &str = "EVENTSTREAM_IT_INSTANCE";

/// A running instance in a child process (killed when dropped).
pub struct Instance {
    child: Child,
    /// Where clients connect, e.g. `http://127.0.0.1:40123`.
    pub url: String,
}

/// What an instance is started with besides its database: settings
/// (`eventstream.*` keys) added or left out of the test defaults, and
/// environment variables (`ROCKET_*` ones reach its figment as they would
/// an app's).
#[derive(Default)]
pub struct Launch<'a> {
    pub settings: &'a [(&'a str, Value)],
    pub without: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// Send one event on this channel in a transaction, then die between
    /// its COMMIT and the fan-out.
    pub commit_then_crash: Option<&'a str>,
}

impl Launch<'_> {
    fn command(&self, database_url: &str) -> Command {
        let settings: Map<String, Value> = self
            .settings
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        let spec = serde_json::json!({
            "database": database_url,
            "settings": settings,
            "without": self.without,
            "commit_then_crash": self.commit_then_crash,
        });
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command.env(VARIABLE, spec.to_string()).kill_on_drop(true);
        for (name, value) in self.env {
            command.env(name, value);
        }
        command
    }
}

impl Instance {
    /// Starts an instance on `database_url` with the test defaults and
    /// `settings` (`eventstream.*` keys); returns once it accepts streams.
    pub async fn start(database_url: &str, settings: &[(&str, Value)]) -> Instance {
        Instance::launch(
            database_url,
            Launch {
                settings,
                ..Launch::default()
            },
        )
        .await
    }

    /// Starts an instance as `launch` says; returns once it accepts streams.
    pub async fn launch(database_url: &str, launch: Launch<'_>) -> Instance {
        let mut child = launch
            .command(database_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the instance starts");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the instance is ready within 30 s")
            .expect("its output is readable")
            .expect("the instance says it is ready");
        let url = ready
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("unexpected first line from the instance: {ready:?}"))
            .to_owned();
        Instance { child, url }
    }

    /// Starts an instance that must not launch; returns what it printed
    /// on its way out.
    pub async fn refused(database_url: &str, launch: Launch<'_>) -> String {
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            launch
                .command(database_url)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output(),
        )
        .await
        .expect("the instance ends within 30 s")
        .expect("the instance runs");
        assert!(!output.status.success(), "the instance launched");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Starts an instance that sends one event (`"crashed"` on `channel`)
    /// in a transaction and dies between its COMMIT and the fan-out (the
    /// `internals` feature's fault point); returns how it exited.
    pub async fn commit_then_crash(
        database_url: &str,
        settings: &[(&str, Value)],
        channel: &str,
    ) -> std::process::ExitStatus {
        let launch = Launch {
            settings,
            env: &[("EVENTSTREAM_FAULT_CRASH_AFTER_COMMIT", "1")],
            commit_then_crash: Some(channel),
            ..Launch::default()
        };
        let mut child = launch
            .command(database_url)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the instance starts");
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("the instance ends within 60 s")
            .expect("its exit status")
    }

    /// The process id, for its memory.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process with SIGKILL: no shutdown, connections cut.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }
}

/// In a child started by [`Instance::start`]: serves until killed and
/// never returns. Otherwise returns at once.
pub fn serve_if_asked() {
    let Ok(spec) = std::env::var(VARIABLE) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).expect("an instance spec");
    let database = spec["database"].as_str().expect("a database URL");
    let mut app = App::sharing_database(database);
    for key in spec["without"].as_array().into_iter().flatten() {
        app = app.without(key.as_str().expect("a setting name"));
    }
    for (key, value) in spec["settings"].as_object().into_iter().flatten() {
        let value: rocket::figment::value::Value =
            serde_json::from_value(value.clone()).expect("a setting value");
        app = app.with(key, value);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        match try_spawn_app(app).await {
            Ok(running) => {
                if let Some(channel) = spec["commit_then_crash"].as_str() {
                    commit_then_crash(&running, channel).await;
                }
                println!("ready {}", running.origin);
                std::future::pending::<()>().await;
            }
            Err(error) => {
                eprintln!("instance: launch failed: {error}");
                std::process::exit(1);
            }
        }
    });
}

/// Sends one event in a transaction and commits; the fault point set in the
/// environment ends the process after the COMMIT.
async fn commit_then_crash(app: &super::TestApp, channel: &str) {
    let data = serde_json::json!("crashed");
    let committed = if app.database_url().starts_with("sqlite:") {
        let mut tx = app.events.begin::<sqlx::Sqlite>().await.expect("begin");
        tx.send_event(channel, "note", &data).await.expect("send");
        tx.commit().await
    } else {
        let mut tx = app.events.begin::<sqlx::Postgres>().await.expect("begin");
        tx.send_event(channel, "note", &data).await.expect("send");
        tx.commit().await
    };
    eprintln!("instance: the commit returned ({committed:?}): the fault point did not fire");
    std::process::exit(0);
}

/// The resident memory of process `pid`, in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
