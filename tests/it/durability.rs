//! What an acknowledged event survives, and what a send says when the
//! database cannot tell.
//!
//! - A crash of the PostgreSQL server in the default durability: a private
//!   cluster on a free port (never the machine's shared one), created with
//!   `pg_createcluster` and crashed with `pg_ctlcluster ... stop -m
//!   immediate`; `wal_writer_delay = 10s` keeps an unflushed commit
//!   unflushed long enough to be lost.
//! - A COMMIT whose answer is lost: a loopback TCP proxy between the app and
//!   PostgreSQL forwards the COMMIT, lets the server answer it, and closes
//!   both sides without passing the answer on.
//! - An application transaction's COMMIT that is still under way (waiting
//!   for a synchronous standby) when its connection is cut: the answer
//!   waits for it to end instead of saying "not stored" too early.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use libtest_mimic::Trial;
use sqlx::Row;

use crate::helpers::{App, Cluster, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_postgres => [
            acknowledged_events_survive_a_postgres_crash,
            a_commit_whose_answer_is_lost_is_looked_up_not_repeated,
            a_commit_nobody_can_confirm_is_indeterminate,
            a_transaction_whose_commit_is_still_under_way_is_not_said_lost,
        ],
    ]
}

async fn acknowledged_events_survive_a_postgres_crash() {
    let cluster = Cluster::create("es_crash", &["wal_writer_delay=10s"]);
    cluster.create_database("events").await;
    let app = spawn_app(App::sharing_database(&cluster.url("events"))).await;

    // 16 publishers; every acknowledged (channel, id) and what it carried.
    let crashed = Arc::new(AtomicBool::new(false));
    let publishers = (0..16).map(|publisher| {
        let events = app.events.clone();
        let crashed = Arc::clone(&crashed);
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0_u64;
            while !crashed.load(Ordering::SeqCst) {
                let channel = format!("c{}", publisher % 4);
                let data = format!("{publisher}-{n}");
                n += 1;
                if let Ok(Some(id)) = events.send_event(&channel, "message", &data).await {
                    acknowledged.push((channel, id.seq(), data));
                }
            }
            acknowledged
        })
    });
    let publishers: Vec<_> = publishers.collect();
    // Let commits pile up in the unflushed WAL, then crash the server.
    while app.events.metrics().events_sent < 2000 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cluster.crash();
    crashed.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for publisher in publishers {
        acknowledged.extend(publisher.await.expect("a publisher"));
    }
    cluster.start();

    let storage = sqlx::PgPool::connect(&cluster.url("events"))
        .await
        .expect("the restarted cluster answers");
    let stored: BTreeMap<(String, u64), String> =
        sqlx::query("SELECT channel, id, data FROM eventstream_events")
            .fetch_all(&storage)
            .await
            .expect("the event log")
            .iter()
            .map(|row| {
                let channel: String = row.get("channel");
                let id: i64 = row.get("id");
                let data: String = row.get("data");
                ((channel, id as u64), data)
            })
            .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|(channel, id, data)| {
            stored.get(&(channel.clone(), *id)) != Some(&serde_json::to_string(data).expect("json"))
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events are gone or changed after the crash, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );

    // Ids go on after the newest acknowledged one: none is given out twice.
    let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
    for (channel, id, _) in &acknowledged {
        let entry = newest.entry(channel).or_default();
        *entry = (*entry).max(*id);
    }
    for (channel, last) in newest {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let id = loop {
            // The app's pool reconnects to the restarted server.
            match app.events.send_event(channel, "message", &"after").await {
                Ok(Some(id)) => break id.seq(),
                _ if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => panic!("no send succeeded after the restart: {other:?}"),
            }
        };
        assert!(
            id > last,
            "{channel}: id {id} reused (acknowledged up to {last})"
        );
    }
    storage.close().await;
    app.stop().await;
    drop(cluster);
}

/// A TCP proxy in front of PostgreSQL that, when armed, cuts the answer to
/// the writer's next COMMIT (a connection that set `synchronous_commit`,
/// which only the writer does; retention also commits): it forwards the
/// COMMIT, reads the server's answer (so the commit has happened), and
/// closes every connection without passing it on. Optionally it then
/// refuses new connections.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    refuse_after_cut: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl CommitCutter {
    async fn start(upstream: String) -> CommitCutter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let (cut, _) = tokio::sync::watch::channel(0_u64);
        let cutter = CommitCutter {
            port,
            armed: Arc::new(AtomicBool::new(false)),
            refusing: Arc::new(AtomicBool::new(false)),
            refuse_after_cut: Arc::new(AtomicBool::new(false)),
            cut,
        };
        let (armed, refusing, refuse_after_cut, cut) = (
            Arc::clone(&cutter.armed),
            Arc::clone(&cutter.refusing),
            Arc::clone(&cutter.refuse_after_cut),
            cutter.cut.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let connection = Connection {
                    armed: Arc::clone(&armed),
                    refusing: Arc::clone(&refusing),
                    refuse_after_cut: Arc::clone(&refuse_after_cut),
                    cut: cut.clone(),
                };
                tokio::spawn(connection.pump(client, server));
            }
        });
        cutter
    }

    /// Without TLS, so the proxy can see the COMMIT.
    fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }
}

struct Connection {
    armed: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    refuse_after_cut: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Connection {
    async fn pump(self, mut client: tokio::net::TcpStream, mut server: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut cut = self.cut.subscribe();
        let (mut from_client, mut from_server) = (vec![0_u8; 65536], vec![0_u8; 65536]);
        let mut writing = false;
        loop {
            tokio::select! {
                read = client.read(&mut from_client) => {
                    let Ok(n) = read else { return };
                    if n == 0 { return; }
                    let chunk = &from_client[..n];
                    let marker = b"synchronous_commit";
                    writing |= chunk.windows(marker.len()).any(|window| window == marker);
                    let commit = chunk.windows(7).any(|window| window == b"COMMIT\0");
                    if server.write_all(chunk).await.is_err() { return; }
                    if commit && writing && self.armed.swap(false, Ordering::SeqCst) {
                        // Let the server commit and answer, then lose the answer.
                        let mut answer = Vec::new();
                        while !answer.contains(&b'Z') {
                            let Ok(n) = server.read(&mut from_server).await else { break };
                            if n == 0 { break; }
                            answer.extend_from_slice(&from_server[..n]);
                        }
                        if self.refuse_after_cut.load(Ordering::SeqCst) {
                            self.refusing.store(true, Ordering::SeqCst);
                        }
                        self.cut.send_modify(|generation| *generation += 1);
                        return;
                    }
                }
                read = server.read(&mut from_server) => {
                    let Ok(n) = read else { return };
                    if n == 0 { return; }
                    if client.write_all(&from_server[..n]).await.is_err() { return; }
                }
                _ = cut.changed() => return,
            }
        }
    }
}

/// The rows of the event log, read directly (not through the proxy).
async fn stored_rows(url: &str) -> Vec<(String, u64, String)> {
    let pool = sqlx::PgPool::connect(url).await.expect("the database");
    let rows = sqlx::query("SELECT channel, id, data FROM eventstream_events ORDER BY channel, id")
        .fetch_all(&pool)
        .await
        .expect("the event log")
        .iter()
        .map(|row| {
            let id: i64 = row.get("id");
            (row.get("channel"), id as u64, row.get("data"))
        })
        .collect();
    pool.close().await;
    rows
}

/// The app on a fresh PostgreSQL database, connected through a cutter.
async fn app_behind_cutter() -> (
    crate::helpers::TestApp,
    CommitCutter,
    crate::helpers::TestDatabase,
) {
    let database = crate::helpers::TestDatabase::create(crate::helpers::Setup::Postgres).await;
    let (authority, name) = database
        .url
        .trim_start_matches("postgres://")
        .split_once('/')
        .expect("a database url");
    let upstream = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let cutter = CommitCutter::start(upstream.to_owned()).await;
    let app = spawn_app(App::sharing_database(&cutter.url(name))).await;
    (app, cutter, database)
}

/// Five sends share a batch whose COMMIT succeeds but is never answered.
/// The writer asks storage instead of retrying blindly: every send gets
/// the id its event was stored under, and nothing is stored twice.
async fn a_commit_whose_answer_is_lost_is_looked_up_not_repeated() {
    let (app, cutter, database) = app_behind_cutter().await;
    cutter.armed.store(true, Ordering::SeqCst);
    let numbers: Vec<u32> = (0..5).collect();
    let sends = numbers
        .iter()
        .map(|n| app.events.send_event("c", "message", n));
    let results = futures_util::future::join_all(sends).await;
    assert!(!cutter.armed.load(Ordering::SeqCst), "a COMMIT was cut");
    let rows = stored_rows(&database.url).await;
    assert_eq!(rows.len(), 5, "each event stored once: {rows:?}");
    for (n, result) in results.into_iter().enumerate() {
        let id = result
            .unwrap_or_else(|error| panic!("send {n}: {error}"))
            .expect("an id");
        let row = rows
            .iter()
            .find(|(_, seq, _)| *seq == id.seq())
            .expect("its row");
        assert_eq!(row.2, n.to_string(), "send {n} got the id of its own event");
    }
    assert_eq!(app.send_event("c", serde_json::json!("next")).await, "c:6");
    app.stop().await;
    database.remove().await;
}

/// The COMMIT's answer is lost and the database cannot be reached to ask:
/// the send says it cannot know, and the event is stored at most once.
async fn a_commit_nobody_can_confirm_is_indeterminate() {
    let (app, cutter, database) = app_behind_cutter().await;
    cutter.refuse_after_cut.store(true, Ordering::SeqCst);
    cutter.armed.store(true, Ordering::SeqCst);
    let sent = app.events.send_event("c", "message", &"maybe").await;
    assert!(
        matches!(sent, Err(eventstream_rocket::Error::Indeterminate)),
        "{sent:?}"
    );
    // Resolved by reading storage: the commit did happen, once.
    let rows = stored_rows(&database.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2, "\"maybe\"");
    cutter.refusing.store(false, Ordering::SeqCst);
    app.stop().await;
    database.remove().await;
}

/// An [`EventTx`](eventstream_rocket::EventTx) commits while the server
/// waits for a synchronous standby that is not there, and the network cuts
/// the connection: the transaction is committed locally but invisible until
/// the wait ends. Looking its events up then would say "not stored", and
/// an application retrying would store them twice. The commit's answer
/// waits for the transaction to end: once the standby requirement is
/// lifted, it says stored, with the ids, and the event is there once.
async fn a_transaction_whose_commit_is_still_under_way_is_not_said_lost() {
    let cluster = Cluster::create("es_in_doubt", &[]);
    cluster.create_database("events").await;
    let relay = crate::helpers::SilencingRelay::start(&cluster.address()).await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/events?sslmode=disable",
        relay.port
    );
    let app = spawn_app(App::sharing_database(&url)).await;
    let admin = sqlx::PgPool::connect(&cluster.url("postgres"))
        .await
        .expect("the private cluster answers");
    let set_standbys = |names: &'static str| {
        let admin = admin.clone();
        async move {
            sqlx::query(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
            ))
            .execute(&admin)
            .await
            .expect("ALTER SYSTEM");
            sqlx::query("SELECT pg_reload_conf()")
                .execute(&admin)
                .await
                .expect("reload");
        }
    };
    set_standbys("nobody").await;

    let events = app.events.clone();
    let committing = tokio::spawn(async move {
        let mut tx = events.begin::<sqlx::Postgres>().await.expect("begin");
        tx.send_event("doubt", "message", &serde_json::json!("once"))
            .await
            .expect("send");
        tx.commit().await
    });
    // Waits until some backend is in `wait_event` (what the server says it
    // is waiting for).
    let until_waiting_on = |wait_event: &'static str| {
        let admin = admin.clone();
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = $1",
                )
                .bind(wait_event)
                .fetch_one(&admin)
                .await
                .expect("pg_stat_activity");
                if waiting > 0 {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nothing waits on {wait_event}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    until_waiting_on("SyncRep").await;
    // The network fails: the server keeps waiting, the app hears nothing.
    relay.cut_all();
    // The app asks what became of the transaction, and waits for it ...
    until_waiting_on("transactionid").await;
    // ... which ends once the standby requirement is lifted.
    set_standbys("").await;
    let answer = committing.await.expect("the commit task");
    let ids = answer.expect("stored: the commit took, and the answer waited for it");
    assert_eq!(ids.len(), 1);
    let stored: i64 = {
        let events = sqlx::PgPool::connect(&cluster.url("events"))
            .await
            .expect("events");
        let count =
            sqlx::query_scalar("SELECT COUNT(*) FROM eventstream_events WHERE channel = 'doubt'")
                .fetch_one(&events)
                .await
                .expect("count");
        events.close().await;
        count
    };
    assert_eq!(stored, 1);
    admin.close().await;
    app.stop().await;
    drop(cluster);
}
