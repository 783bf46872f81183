//! Retention always makes progress: a backlog of any size is trimmed while
//! sends flow, in pieces that hold a send only briefly, on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use serde_json::json;
use sqlx::Row;

use crate::helpers::{App, Setup, run_sql, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![on_both_backends => [a_backlog_is_trimmed_while_sends_flow]]
}

const CHANNELS: u64 = 100;
const PER_CHANNEL: u64 = 1_000;
/// The longest a send may wait while the backlog is trimmed: a piece
/// removes at most 1,000 events (milliseconds); the rest is this noisy
/// machine's margin.
const SEND_BOUND: Duration = Duration::from_secs(1);

/// Events older than `cutoff_ms` still stored.
async fn older_than(url: &str, cutoff_ms: i64) -> i64 {
    let sql = "SELECT COUNT(*) AS n FROM eventstream_events WHERE created_ms < $1";
    macro_rules! count {
        ($pool:ty) => {{
            let pool = <$pool>::connect(url).await.expect("the event log");
            let n: i64 = sqlx::query(sql)
                .bind(cutoff_ms)
                .fetch_one(&pool)
                .await
                .expect("a count")
                .get("n");
            pool.close().await;
            n
        }};
    }
    if url.starts_with("sqlite:") {
        count!(sqlx::SqlitePool)
    } else {
        count!(sqlx::PgPool)
    }
}

/// 100,000 week-old events in 100 channels (as after a long downtime),
/// then the server starts with `retention_secs = 60` while sends flow to
/// those channels at 20 per second: every old event goes, and no send
/// waits longer than [`SEND_BOUND`].
async fn a_backlog_is_trimmed_while_sends_flow(backend: Setup) {
    // The schema, from an instance that trims nothing.
    let setup =
        spawn_app(App::on(backend).with("eventstream.retention_secs", 10 * 365 * 86_400)).await;
    let url = setup.database_url().to_owned();
    let database = setup.stop_keep_database().await;
    let week_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
        - 7 * 86_400_000;
    let total = CHANNELS * PER_CHANNEL;
    let numbers = |count: u64| {
        if url.starts_with("sqlite:") {
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) SELECT i FROM n",
                count - 1
            )
        } else {
            format!("SELECT generate_series(0, {}) AS i", count - 1)
        }
    };
    let concat = if url.starts_with("sqlite:") {
        "'old-' || (i % 100)"
    } else {
        "'old-' || (i % 100)::text"
    };
    let statements = [
        format!(
            "INSERT INTO eventstream_channels (name, last_id, trimmed_through) \
                 SELECT 'old-' || {cast}, {PER_CHANNEL}, 0 FROM ({numbers}) AS n",
            cast = if url.starts_with("sqlite:") {
                "i"
            } else {
                "i::text"
            },
            numbers = numbers(CHANNELS),
        ),
        format!(
            "INSERT INTO eventstream_events (channel, id, event_type, data, skip_users, created_ms) \
                 SELECT {concat}, i / 100 + 1, 'message', '\"old\"', NULL, {week_ago} + i FROM ({numbers}) AS n",
            numbers = numbers(total),
        ),
    ];
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    run_sql(&url, &statements).await;
    assert_eq!(
        older_than(&url, week_ago + total as i64).await,
        total as i64
    );

    let app = spawn_app(
        App::on_database(database)
            .with("eventstream.retention_secs", 60)
            .with("eventstream.trim_interval_secs", 1),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (events, stop) = (app.events.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut longest = Duration::ZERO;
            let mut sent = 0_u64;
            let mut every = tokio::time::interval(Duration::from_millis(50));
            while !stop.load(Ordering::Acquire) {
                every.tick().await;
                let channel = format!("old-{}", sent % CHANNELS);
                let started = Instant::now();
                events
                    .send_event(&channel, "message", &json!("new"))
                    .await
                    .expect("stored");
                longest = longest.max(started.elapsed());
                sent += 1;
            }
            (sent, longest)
        })
    };
    app.wait_for_metrics(
        "retention did not trim the backlog",
        Duration::from_secs(120),
        |metrics| metrics.trimmed_events >= total,
    )
    .await;
    stop.store(true, Ordering::Release);
    let (sent, longest) = sender.await.expect("the sender");
    let metrics = app.events.metrics();
    eprintln!(
        "{backend:?}: trimmed {} events while {sent} sends flowed; the longest waited {longest:?}",
        metrics.trimmed_events
    );
    assert_eq!(metrics.trim_failures, 0, "{metrics:?}");
    assert!(sent > 0);
    assert!(
        longest <= SEND_BOUND,
        "a send waited {longest:?} behind retention"
    );
    assert_eq!(older_than(&url, week_ago + total as i64).await, 0);
    // What was sent meanwhile is all still there, after the trimmed ids.
    let snapshot = app
        .events
        .snapshot(&["old-0".to_owned()], 10_000)
        .await
        .expect("a snapshot");
    assert!(snapshot.0.iter().all(|event| event.data == "\"new\""));
    assert!(snapshot.0.iter().all(|event| event.id.seq() > PER_CHANNEL));
    app.stop().await;
}
