//! A TCP relay that can hold connections back: put between the app and a
//! server (Pushpin's control API), it makes "the publisher is behind" a
//! state a test can set and end.

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays every connection to `upstream`; while paused, new connections
/// are accepted but wait, unforwarded, until [`Relay::resume`].
pub struct Relay {
    /// `http://127.0.0.1:<port>`: use it instead of the upstream's URL.
    pub url: String,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Relay {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let (open, gate) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstream, mut gate) = (upstream.clone(), gate.clone());
                tokio::spawn(async move {
                    if gate.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Relay {
            url: format!("http://127.0.0.1:{port}"),
            open,
            task,
        }
    }

    /// Holds new connections back.
    pub fn pause(&self) {
        self.open.send_replace(false);
    }

    /// Forwards the held connections, and new ones again.
    pub fn resume(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
