//! A throw-away Pushpin in front of a test's app, started by
//! `tests/support/pushpin-harness.sh` (a copy of the team's harness).

use std::time::Duration;

use super::PUSHPIN_SIG_KEY;

const HARNESS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/pushpin-harness.sh"
);

/// Client connections each test Pushpin accepts.
pub const MAX_CONNECTIONS: usize = 5000;

/// A Pushpin on ports of its own; stopped when dropped.
pub struct Pushpin {
    dir: tempfile::TempDir,
    /// Where clients connect, e.g. `http://127.0.0.1:17999`.
    pub http: String,
    /// The control API, e.g. `http://127.0.0.1:5661`.
    pub control: String,
    http_port: u16,
    offset: u16,
    /// The app port it routes to, once started.
    origin_port: Option<u16>,
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl Pushpin {
    /// Chooses free ports: the client port, and an offset whose four
    /// control ports (5560..5563 + offset) are all free. (The harness ran
    /// only this trial if `pushpin --version` works.)
    pub fn reserve() -> Pushpin {
        // Below Linux's ephemeral range (32768 up): there, the client
        // sockets of other tests (thousands at times) take ports that a
        // bind would then be refused.
        let random_port = || {
            use std::hash::{BuildHasher, RandomState};
            let random = RandomState::new().hash_one(std::time::Instant::now());
            20_000 + (random % 12_000) as u16
        };
        let http_port = (0..1000)
            .map(|_| random_port())
            .find(|port| port_is_free(*port))
            .expect("a free port");
        let offset = (0..1000)
            .find_map(|_| {
                let base = random_port();
                let offset = base.checked_sub(5560)?;
                let ports = base..base + 4;
                (!ports.contains(&http_port) && ports.into_iter().all(port_is_free))
                    .then_some(offset)
            })
            .expect("four free consecutive ports");
        Pushpin {
            dir: tempfile::tempdir().expect("temporary directory"),
            http: format!("http://127.0.0.1:{http_port}"),
            control: format!("http://127.0.0.1:{}", 5561 + offset),
            http_port,
            offset,
            origin_port: None,
        }
    }

    /// The app port it routes to, if started.
    pub fn origin_port(&self) -> Option<u16> {
        self.origin_port
    }

    /// Starts Pushpin in front of `origin_port`; returns once it holds streams.
    /// Configured as the README tells users to: no publish rate limit (on
    /// 1.36 any limit stalls delivery while publishes arrive less than
    /// 25 ms apart) and room for the scale test's connections.
    pub fn start(&mut self, origin_port: u16) {
        let output = std::process::Command::new("bash")
            .env("PUSHPIN_MESSAGE_RATE", "0")
            .env("PUSHPIN_MESSAGE_HWM", "1000000")
            .env("PUSHPIN_MAXCONN", MAX_CONNECTIONS.to_string())
            .arg(HARNESS)
            .arg("start")
            .arg(self.dir.path())
            .arg(self.http_port.to_string())
            .arg(self.offset.to_string())
            .arg(format!("127.0.0.1:{origin_port}"))
            .arg(PUSHPIN_SIG_KEY)
            .output()
            .expect("the harness runs");
        assert!(
            output.status.success(),
            "pushpin did not start: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.origin_port = Some(origin_port);
        // The client port answers before Pushpin's proxy can hand holds to
        // its handler ("Accept service unavailable."): wait until a real
        // stream request is held.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if self.status_of("/events/pushpin-ready") == Some(200) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pushpin never held a stream"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Pushpin: its clients' connections end, and publishing to it
    /// fails until [`Pushpin::start`].
    pub fn stop(&self) {
        let _ = std::process::Command::new("bash")
            .arg(HARNESS)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }

    /// The status code of a GET through Pushpin (reading only the head).
    fn status_of(&self, path: &str) -> Option<u16> {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            socket,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut head = [0_u8; 12];
        socket.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }
}

impl Drop for Pushpin {
    fn drop(&mut self) {
        self.stop();
        // For a look at what Pushpin did: its logs survive the test.
        if let Some(keep) = std::env::var_os("EVENTSTREAM_KEEP_PUSHPIN_LOGS") {
            let to = std::path::Path::new(&keep).join(format!("pushpin-{}", self.http_port));
            let _ = std::process::Command::new("cp")
                .arg("-r")
                .arg(self.dir.path().join("log"))
                .arg(to)
                .output();
        }
    }
}
