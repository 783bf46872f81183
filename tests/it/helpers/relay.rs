//! A TCP relay that can hold connections back: put between the app and a
//! server (Pushpin's control API), it makes "the publisher is behind" a
//! state a test can set and end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

/// A TCP relay whose connections can go silent without closing, as when a
/// NAT or a firewall drops a connection's state: put between an instance
/// and PostgreSQL, it cuts the bus listener's connection (the one that
/// sent `LISTEN`) while every other connection goes on. It can also close
/// every connection at once, as a network failure would.
pub struct SilencingRelay {
    /// The port to connect to instead of the upstream's.
    pub port: u16,
    connections: Arc<Mutex<Vec<Arc<Link>>>>,
    task: tokio::task::JoinHandle<()>,
}

/// One relayed connection: whether it sent `LISTEN`, and whether it went
/// silent.
#[derive(Default)]
struct Link {
    listens: AtomicBool,
    silent: AtomicBool,
    /// Set to close the connection on both sides.
    cut: watch::Sender<bool>,
}

impl SilencingRelay {
    /// Relays to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> SilencingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let connections: Arc<Mutex<Vec<Arc<Link>>>> = Arc::default();
        let upstream = upstream.to_owned();
        let registry = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let link = Arc::new(Link::default());
                registry.lock().expect("links").push(Arc::clone(&link));
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, &link, true),
                        pump(server_read, client_write, &link, false),
                    );
                });
            }
        });
        SilencingRelay {
            port,
            connections,
            task,
        }
    }

    /// Closes every connection open now, on both sides, as a network
    /// failure would: the server's side notices only when it next writes.
    pub fn cut_all(&self) {
        for link in self.connections.lock().expect("links").iter() {
            link.cut.send_replace(true);
        }
    }

    /// The connections that have sent `LISTEN` by now forward nothing more
    /// either way, and stay open; the others, and later ones, go on.
    pub fn silence_listeners(&self) {
        for link in self.connections.lock().expect("links").iter() {
            if link.listens.load(Ordering::SeqCst) {
                link.silent.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Copies `from` to `to` until either ends, noting a `LISTEN` on the way
/// up; once the link is silent, holds the connection open and forwards
/// nothing more.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: &Link,
    up: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0; 64 * 1024];
    let mut cut = link.cut.subscribe();
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            },
            // Both halves are dropped on return: the socket closes.
            _ = cut.wait_for(|cut| *cut) => return,
        };
        if up && buffer[..read].windows(7).any(|window| window == b"LISTEN ") {
            link.listens.store(true, Ordering::SeqCst);
        }
        if link.silent.load(Ordering::SeqCst) {
            // Keep both halves, forward nothing: a half-open connection.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

impl Drop for SilencingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
