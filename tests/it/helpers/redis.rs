//! A private `redis-server` on a free port, started by the test (never the
//! machine's shared one, which other tests may use) and stopped with the
//! value. Nothing is persisted: a restart is an empty server, as after a
//! crash of one that kept nothing.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// Starts a server on a free port; returns once it answers.
    pub async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { child: None, port };
        server.run().await;
        server
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self
                .command("PING")
                .await
                .is_ok_and(|reply| reply.starts_with("+PONG"))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not answer on port {} within 10 s",
                self.port
            );
            // The server is starting: no signal to wait on but its port.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one inline command and returns the first reply line.
    pub async fn command(&self, command: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await?;
        let mut reply = vec![0; 512];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
            .await
            .map_err(|_| std::io::Error::other("no reply within 5 s"))??;
        Ok(String::from_utf8_lossy(&reply[..read]).into_owned())
    }

    /// Kills the server (SIGKILL).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Kills the server and starts an empty one on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }

    /// Starts an empty server on the same port after [`RedisServer::stop`].
    pub async fn start_again(&mut self) {
        self.run().await;
    }
}
