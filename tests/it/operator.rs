//! What operators read: the health check (`health_path`) in each of its
//! states, and the Prometheus scrape (`metrics_path`), parsed by a
//! Prometheus text parser.

use std::time::Duration;

use libtest_mimic::Trial;
use serde_json::{Value, json};

#[cfg(feature = "redis")]
use crate::helpers::RedisServer;
use crate::helpers::{App, Cluster, Setup, TestApp, closed_port, spawn_app};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            a_scrape_parses_as_prometheus_text,
            delivery_timing_breaks_every_event_down_by_stage,
            health_is_ok_when_storage_answers,
            a_failing_grip_proxy_degrades_health,
            health_shows_no_word_of_what_the_proxy_answered,
        ],
        needs_postgres => [health_is_unavailable_while_storage_is_down],
        needs_redis => [
            health_is_degraded_while_the_bus_is_down,
        ],
    ]
}

/// Asks the health check until `done` holds; panics with the last answer
/// after `within`. (Health is computed when asked: there is nothing to
/// wait on but the answer.)
async fn health_until(
    app: &TestApp,
    what: &str,
    within: Duration,
    done: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    loop {
        ticks.tick().await;
        let (status, body) = app.health().await;
        if done(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}; last answer {status} {body}"
        );
    }
}

fn with_health(app: App) -> App {
    app.with("eventstream.health_path", "/healthz")
}

async fn health_is_ok_when_storage_answers() {
    let app = spawn_app(with_health(App::on(Setup::Sqlite))).await;
    let (status, body) = app.health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["storage"]["ok"], true);
    assert_eq!(body["storage"]["backend"], "sqlite");
    assert_eq!(body["bus"], Value::Null, "no bus configured");
    assert_eq!(body["reasons"], json!([]));
    app.stop().await;
}

/// An app publishing to a GRIP proxy at `port`, once its health says
/// publishing fails; and that answer.
async fn degraded_by_a_proxy_at(port: u16) -> (TestApp, Value) {
    let app = spawn_app(with_health(
        App::on(Setup::Sqlite).grip_proxy_at(&format!("http://127.0.0.1:{port}")),
    ))
    .await;
    app.send_event("news", json!("x")).await;
    let body = health_until(
        &app,
        "degraded by the proxy",
        Duration::from_secs(10),
        |status, body| status == 200 && body["status"] == "degraded",
    )
    .await;
    (app, body)
}

async fn a_failing_grip_proxy_degrades_health() {
    // A port nothing listens on.
    let port = closed_port();
    let (app, body) = degraded_by_a_proxy_at(port).await;
    let proxy = &body["grip"][0];
    assert!(proxy["last_error"].is_string(), "{body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .is_some_and(|reason| reason.contains("publishing to")),
        "{body}"
    );
    app.stop().await;
}

/// A proxy that refuses every publish with a body that names a secret:
/// health says it answered 500, and nothing of what it said.
async fn health_shows_no_word_of_what_the_proxy_answered() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let port = proxy.local_addr().expect("an address").port();
    let answering = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut connection, _)) = proxy.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0; 64 * 1024];
                let _ = connection.read(&mut request).await;
                let body = "db password hunter2 at db.internal";
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = connection.write_all(answer.as_bytes()).await;
            });
        }
    });
    let (app, body) = degraded_by_a_proxy_at(port).await;
    assert_eq!(
        body["grip"][0]["last_error"],
        json!("the proxy answered 500 Internal Server Error"),
        "{body}"
    );
    let text = body.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("db.internal"),
        "{text}"
    );
    answering.abort();
    app.stop().await;
}

async fn health_is_unavailable_while_storage_is_down() {
    let cluster = Cluster::create("es_health", &[]);
    cluster.create_database("events").await;
    let app = spawn_app(with_health(App::sharing_database(&cluster.url("events")))).await;
    assert_eq!(app.health().await.0, 200);
    cluster.crash();
    let (status, body) = app.health().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["storage"]["ok"], false);
    // In the library's words, never the database's.
    let error = body["storage"]["error"].as_str().unwrap_or_default();
    assert!(
        [
            "no connection to the database",
            "no database connection free within the pool's timeout",
            "the database refused the probe",
            "no answer within 2s",
        ]
        .contains(&error),
        "{body}"
    );
    cluster.start();
    health_until(&app, "ok again", Duration::from_secs(20), |status, body| {
        status == 200 && body["status"] == "ok"
    })
    .await;
    app.stop().await;
}

#[cfg(feature = "redis")]
async fn health_is_degraded_while_the_bus_is_down() {
    let mut server = RedisServer::start().await;
    let app = spawn_app(with_health(
        App::on(Setup::Postgres)
            .with("eventstream.broadcast", "redis")
            .with("eventstream.redis_url", server.url()),
    ))
    .await;
    let (status, body) = app.health().await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    assert_eq!(body["bus"]["kind"], "redis");
    assert_eq!(body["bus"]["connected"], true);
    server.stop().await;
    let body = health_until(
        &app,
        "degraded by the bus",
        Duration::from_secs(10),
        |status, body| status == 200 && body["status"] == "degraded",
    )
    .await;
    assert_eq!(body["bus"]["connected"], false, "{body}");
    assert_eq!(
        body["storage"]["ok"], true,
        "streams still work from storage"
    );
    server.restart().await;
    health_until(&app, "ok again", Duration::from_secs(20), |status, body| {
        status == 200 && body["status"] == "ok"
    })
    .await;
    assert!(app.events.metrics().bus_reconnects >= 1);
    app.stop().await;
}

/// The scrape at `/metrics`, parsed, and its text.
async fn scrape(app: &TestApp) -> (prometheus_parse::Scrape, String) {
    let response = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("a scrape");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
    (scrape, text)
}

async fn a_scrape_parses_as_prometheus_text() {
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.metrics_path", "/metrics")).await;
    let mut first = app.stream("/events/?channel=news", &[]).await;
    let mut second = app.stream("/events/?channel=news", &[]).await;
    first.next_event().await;
    second.next_event().await;
    for n in 0..5 {
        app.send_event("news", json!(n)).await;
    }
    let (scrape, text) = scrape(&app).await;
    let value = |name: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|sample| sample.metric == name)
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        match &sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => *value,
            other => panic!("{name} is {other:?}"),
        }
    };
    assert_eq!(value("eventstream_events_sent_total"), 5.0);
    assert_eq!(value("eventstream_subscribers"), 2.0);
    assert_eq!(value("eventstream_streams_opened_total"), 2.0);
    let publish = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == "eventstream_publish_seconds")
        .unwrap_or_else(|| panic!("no publish histogram in:\n{text}"));
    let prometheus_parse::Value::Histogram(buckets) = &publish.value else {
        panic!("publish_seconds is {:?}", publish.value);
    };
    let total = buckets.last().map_or(0.0, |bucket| bucket.count);
    assert_eq!(total, 5.0, "every send observed once: {buckets:?}");
    assert!(!text.contains("channel="), "no per-channel labels: {text}");
    assert!(
        !text.contains("eventstream_delivery_stage_seconds_count"),
        "no stage timing unless delivery_timing is on: {text}"
    );
    app.stop().await;
}

/// With `delivery_timing`, every persisted event is timed once per step
/// up to its publish answer, and once per stream that takes it.
async fn delivery_timing_breaks_every_event_down_by_stage() {
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .with("eventstream.metrics_path", "/metrics")
            .with("eventstream.delivery_timing", true),
    )
    .await;
    let mut streams = [
        app.stream("/events/?channel=news", &[]).await,
        app.stream("/events/?channel=news", &[]).await,
    ];
    for stream in &mut streams {
        assert_eq!(stream.next_event().await.event(), "stream-open");
    }
    for n in 0..5 {
        app.send_event("news", json!(n)).await;
    }
    for stream in &mut streams {
        for n in 0..5 {
            assert_eq!(stream.next_event().await.data, n.to_string());
        }
    }
    let (scrape, text) = scrape(&app).await;
    let counted = |stage: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|sample| {
                sample.metric == "eventstream_delivery_stage_seconds"
                    && sample.labels.get("stage") == Some(stage)
            })
            .unwrap_or_else(|| panic!("no {stage} stage in:\n{text}"));
        let prometheus_parse::Value::Histogram(buckets) = &sample.value else {
            panic!("{stage} is {:?}", sample.value);
        };
        buckets.last().map_or(0.0, |bucket| bucket.count)
    };
    for stage in ["queue", "commit", "hub", "fanout", "answer"] {
        assert_eq!(counted(stage), 5.0, "{stage}, once per event:\n{text}");
    }
    assert_eq!(counted("wake"), 10.0, "once per event and stream:\n{text}");
    let chunks = counted("write");
    assert!(
        (2.0..=10.0).contains(&chunks),
        "once per chunk, {chunks}:\n{text}"
    );
    app.stop().await;
}
