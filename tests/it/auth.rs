//! Identity and authorization: tokens, forbidden channels, kicks, skip lists.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use eventstream_rocket::{Authorizer, Decision, SendOptions, Stage, User};
use libtest_mimic::Trial;

use crate::helpers::{
    AnnUntilRevoked, App, Setup, TestDatabase, on_bus, postgres_bus, spawn_app, token, token_with,
};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            private_channels_are_forbidden_to_anonymous_users,
            a_valid_token_in_header_or_query_signs_the_user_in,
            bad_credentials_are_forbidden_never_anonymous,
            tokens_not_valid_yet_are_forbidden,
            pinned_issuer_and_audience_are_enforced_and_signed_by_token_for,
            permission_checks_that_still_pass_end_no_stream,
            a_kicked_stream_gets_one_forbidden_error_and_ends,
            a_stream_that_stays_behind_is_still_kicked,
            a_kick_between_authorizing_and_registering_is_not_lost,
        ],
        on_every_path => [
            skipped_users_get_neither_the_live_event_nor_its_replay,
            an_expired_token_is_told_apart_from_a_refusal,
            a_multi_channel_stream_moves_one_entry_per_frame_past_a_withheld_event,
        ],
        needs_postgres => [an_authorizer_that_cannot_tell_keeps_streams_open_and_asks_again],
    ]
}

/// Lets `ann` read everything until `revoked`; while `unreachable`, it
/// cannot tell (its own data is out of reach). Counts the times it could
/// not tell.
struct Flaky {
    revoked: Arc<AtomicBool>,
    unreachable: Arc<AtomicBool>,
    undecided: Arc<AtomicU64>,
}

#[rocket::async_trait]
impl Authorizer for Flaky {
    async fn decide(&self, user: Option<&User>, _channel: &str) -> Decision {
        if self.unreachable.load(Ordering::SeqCst) {
            self.undecided.fetch_add(1, Ordering::SeqCst);
            return Decision::CannotTell;
        }
        let ann = user.is_some_and(|user| user.id == "ann");
        if ann && self.revoked.load(Ordering::SeqCst) {
            Decision::Deny
        } else {
            Decision::Allow
        }
    }
}

/// The re-check that follows a bus reconnect meets an authorizer that
/// cannot reach its data: ann's stream stays open and keeps receiving;
/// once the authorizer can tell again, the stream is asked again by
/// itself, and ends when ann was revoked meanwhile.
async fn an_authorizer_that_cannot_tell_keeps_streams_open_and_asks_again() {
    let (revoked, unreachable, undecided) = Default::default();
    let flaky = |revoked: &Arc<AtomicBool>,
                 unreachable: &Arc<AtomicBool>,
                 undecided: &Arc<AtomicU64>| Flaky {
        revoked: Arc::clone(revoked),
        unreachable: Arc::clone(unreachable),
        undecided: Arc::clone(undecided),
    };
    let database = TestDatabase::create(Setup::Postgres).await;
    let app = spawn_app(
        on_bus(&database.url, &postgres_bus())
            .stage(
                Stage::new()
                    .authorizer_named("test::Flaky", flaky(&revoked, &unreachable, &undecided)),
            )
            .with("eventstream.authorizer", "test::Flaky"),
    )
    .await;
    let ann = format!("Bearer {}", token("ann", 600));
    let mut stream = app
        .stream("/events/_room", &[("Authorization", &ann)])
        .await;
    assert_eq!(stream.next_event().await.event(), "stream-open");

    // Its data out of reach, the bus reconnects: every stream asks again.
    unreachable.store(true, Ordering::SeqCst);
    let admin = sqlx::PgPool::connect(&database.url)
        .await
        .expect("the database");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'eventstream bus' AND datname = current_database()",
    )
    .execute(&admin)
    .await
    .expect("the listener ended");
    admin.close().await;
    app.wait_for_metrics(
        "the bus never reconnected",
        Duration::from_secs(15),
        |metrics| metrics.bus_reconnects >= 1,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while undecided.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never asked again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still open, still receiving.
    app.send_event("_room", json!("while unsure")).await;
    let frame = stream.next_event().await;
    assert_eq!(
        (frame.event(), frame.json()),
        ("message", json!("while unsure")),
        "{frame:?}"
    );

    // Reachable again, and ann revoked meanwhile: the next re-check (a few
    // seconds later, unprompted) ends the stream.
    revoked.store(true, Ordering::SeqCst);
    unreachable.store(false, Ordering::SeqCst);
    let frame = stream
        .next_within(Duration::from_secs(15))
        .await
        .expect("a frame before the end");
    let frame = if frame.comment || frame.event() == "keep-alive" {
        loop {
            let next = stream
                .next_within(Duration::from_secs(15))
                .await
                .expect("a frame");
            if !next.comment && next.event() != "keep-alive" {
                break next;
            }
        }
    } else {
        frame
    };
    assert_eq!(frame.event(), "stream-error", "{frame:?}");
    assert_eq!(frame.json()["condition"], json!("forbidden"));
    app.stop().await;
    database.remove().await;
}

async fn private_channels_are_forbidden_to_anonymous_users() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let mut stream = app
        .stream("/events/?channel=public&channel=_b&channel=_a", &[])
        .await;
    assert_eq!(stream.status, 200);
    let frames = stream.until_end().await;
    assert_eq!(
        frames.len(),
        1,
        "no stream-open before the error: {frames:?}"
    );
    assert_eq!(frames[0].event(), "stream-error");
    assert_eq!(frames[0].id.as_deref(), Some("error"));
    assert_eq!(
        frames[0].json(),
        json!({"condition": "forbidden", "text": "Permission denied to channels: _a, _b", "channels": ["_a", "_b"]})
    );
    app.stop().await;
}

async fn a_valid_token_in_header_or_query_signs_the_user_in() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let jwt = token("ann", 60);
    let mut by_header = app
        .stream(
            "/events/_private",
            &[("Authorization", &format!("Bearer {jwt}"))],
        )
        .await;
    let mut by_query = app
        .stream(&format!("/events/_private?token={jwt}"), &[])
        .await;
    for stream in [&mut by_header, &mut by_query] {
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    }
    app.send_event("_private", json!("secret")).await;
    for stream in [&mut by_header, &mut by_query] {
        assert_eq!(stream.next_event().await.json(), json!("secret"));
    }
    app.stop().await;
}

async fn bad_credentials_are_forbidden_never_anonymous() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let expired = token("ann", -3600);
    let forged = {
        let mut parts: Vec<String> = token("ann", 60).split('.').map(str::to_owned).collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    // An expired token is an error too, told apart so that a client can
    // renew it (`credentials-expired`); the rest are `forbidden`.
    let cases = [
        (
            format!("/events/public?token={expired}"),
            vec![],
            "expired",
            "credentials-expired",
        ),
        (
            format!("/events/public?token={forged}"),
            vec![],
            "invalid token",
            "forbidden",
        ),
        (
            "/events/public?token=not-a-jwt".to_owned(),
            vec![],
            "invalid token",
            "forbidden",
        ),
        (
            "/events/public".to_owned(),
            vec![("Authorization", "Basic YTpi".to_owned())],
            "Bearer",
            "forbidden",
        ),
    ];
    for (path, headers, text, condition) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let frames = app.stream(&path, &headers).await.until_end().await;
        assert_eq!(frames.len(), 1, "{path}");
        let data = frames[0].json();
        assert_eq!(data["condition"], condition, "{path}: {data}");
        assert!(
            data["text"].as_str().expect("text").contains(text),
            "{path}: {data}"
        );
    }
    app.stop().await;
}

/// The first `forbidden` error of a stream at `path`, as JSON.
async fn refusal(app: &crate::helpers::TestApp, path: &str) -> serde_json::Value {
    let frames = app.stream(path, &[]).await.until_end().await;
    assert_eq!(frames.len(), 1, "{path}: {frames:?}");
    let data = frames[0].json();
    assert_eq!(data["condition"], "forbidden", "{path}: {data}");
    data
}

async fn tokens_not_valid_yet_are_forbidden() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let early = token_with(json!({ "sub": "ann", "nbf": now + 3600 }), 7200);
    let data = refusal(&app, &format!("/events/public?token={early}")).await;
    assert!(
        data["text"].as_str().expect("text").contains("nbf"),
        "{data}"
    );
    app.stop().await;
}

async fn pinned_issuer_and_audience_are_enforced_and_signed_by_token_for() {
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .with("eventstream.jwt_issuer", "https://auth.example")
            .with("eventstream.jwt_audience", "events"),
    )
    .await;
    let pinned = json!({ "sub": "ann", "iss": "https://auth.example", "aud": "events" });
    let good = token_with(pinned.clone(), 60);
    let mut stream = app
        .stream(&format!("/events/_private?token={good}"), &[])
        .await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    let minted = app
        .events
        .token_for("ann", std::time::Duration::from_secs(60))
        .expect("a token");
    let mut stream = app
        .stream(&format!("/events/_private?token={minted}"), &[])
        .await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    for claims in [
        json!({ "sub": "ann" }),
        json!({ "sub": "ann", "iss": "https://auth.example" }),
        json!({ "sub": "ann", "iss": "https://elsewhere.example", "aud": "events" }),
        json!({ "sub": "ann", "iss": "https://auth.example", "aud": "another-service" }),
    ] {
        let token = token_with(claims, 60);
        refusal(&app, &format!("/events/public?token={token}")).await;
    }
    app.stop().await;
}

async fn permission_checks_that_still_pass_end_no_stream() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let bob = format!("Bearer {}", token("bob", 60));
    let mut ann_own = app
        .stream("/events/_user-ann", &[("Authorization", &ann)])
        .await;
    let mut ann_public = app
        .stream("/events/public", &[("Authorization", &ann)])
        .await;
    let mut bob_public = app
        .stream("/events/public", &[("Authorization", &bob)])
        .await;
    for stream in [&mut ann_own, &mut ann_public, &mut bob_public] {
        stream.next().await.expect("open");
    }
    // Still allowed: nothing happens.
    assert_eq!(
        app.events
            .channel_permission_changed(Some(&User::new("ann")), "public")
            .await,
        0
    );
    // ann still owns `_user-ann`: her stream there stays.
    assert_eq!(
        app.events
            .channel_permission_changed(Some(&User::new("ann")), "_user-ann")
            .await,
        0
    );
    // An anonymous check on a private channel finds no anonymous stream.
    assert_eq!(
        app.events
            .channel_permission_changed(None, "_user-ann")
            .await,
        0
    );
    app.send_event("public", json!("still here")).await;
    assert_eq!(ann_public.next_event().await.json(), json!("still here"));
    assert_eq!(bob_public.next_event().await.json(), json!("still here"));
    app.stop().await;
}

async fn a_kicked_stream_gets_one_forbidden_error_and_ends() {
    let (stage, revoked) = AnnUntilRevoked::stage();
    let app = spawn_app(App::on(Setup::Sqlite).stage(stage)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let mut stream = app.stream("/events/room", &[("Authorization", &ann)]).await;
    stream.next().await.expect("open");
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        app.events
            .channel_permission_changed(Some(&User::new("ann")), "room")
            .await,
        1
    );
    let frames = stream.until_end().await;
    assert_eq!(
        frames.len(),
        1,
        "exactly one error, then the end: {frames:?}"
    );
    assert_eq!(frames[0].event(), "stream-error");
    assert_eq!(
        frames[0].json(),
        json!({"condition": "forbidden", "text": "Permission denied to channels: room", "channels": ["room"]})
    );
    app.stop().await;
}

/// A stream replaying a backlog far larger than the socket buffers (the
/// client does not read meanwhile) never empties its inbox, where kicks used
/// to be noticed: it must still end at the kick, long before the backlog.
async fn a_stream_that_stays_behind_is_still_kicked() {
    // 32 MB: far more than loopback's socket buffers hold.
    const BACKLOG: usize = 8000;
    let (stage, revoked) = AnnUntilRevoked::stage();
    let app = spawn_app(
        App::on(Setup::Sqlite)
            .stage(stage)
            .with("eventstream.replay_page", 1),
    )
    .await;
    let text = "x".repeat(4096);
    let sends = (0..BACKLOG).map(|_| app.events.send_event("room", "message", &text));
    for sent in futures_util::future::join_all(sends).await {
        sent.expect("stored");
    }
    let ann = format!("Bearer {}", token("ann", 60));
    let mut stream = app
        .stream(
            "/events/room",
            &[("Authorization", &ann), ("Last-Event-ID", "room:0")],
        )
        .await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    assert_eq!(stream.next_event().await.id.as_deref(), Some("room:1"));
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    app.events
        .channel_permission_changed(Some(&User::new("ann")), "room")
        .await;
    let rest = stream.until_end().await;
    let last = rest.last().expect("frames after the kick");
    assert_eq!(
        last.event(),
        "stream-error",
        "the stream ends with the kick"
    );
    assert_eq!(last.json()["condition"], "forbidden");
    let events = rest
        .iter()
        .filter(|frame| frame.event() == "message")
        .count();
    assert!(
        events + 1 < BACKLOG,
        "the kick waited for the whole backlog ({} events) to be replayed",
        events + 1
    );
    app.stop().await;
}

/// Stops `ann`'s first permission check until the test lets it go, so a
/// revocation and its kick can land between the check and the stream's
/// registration with the hub.
struct GatedAuthorizer {
    revoked: std::sync::atomic::AtomicBool,
    first: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
    proceed: tokio::sync::Notify,
}

/// The stage's handle on the shared gate.
struct Gate(std::sync::Arc<GatedAuthorizer>);

#[rocket::async_trait]
impl eventstream_rocket::Authorizer for Gate {
    async fn can_read_channel(&self, user: Option<&User>, _channel: &str) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let ann = user.is_some_and(|user| user.id == "ann");
        let gate = &self.0;
        if ann && gate.first.swap(false, SeqCst) {
            // Decided before the revocation, answered after it.
            let allowed = !gate.revoked.load(SeqCst);
            gate.entered.notify_one();
            gate.proceed.notified().await;
            return allowed;
        }
        !(ann && gate.revoked.load(SeqCst))
    }
}

async fn a_kick_between_authorizing_and_registering_is_not_lost() {
    use std::sync::atomic::Ordering::SeqCst;
    let gate = std::sync::Arc::new(GatedAuthorizer {
        revoked: false.into(),
        first: true.into(),
        entered: tokio::sync::Notify::new(),
        proceed: tokio::sync::Notify::new(),
    });
    let stage = eventstream_rocket::Stage::new()
        .authorizer_named("test::Gated", Gate(std::sync::Arc::clone(&gate)));
    let app = spawn_app(App::on(Setup::Sqlite).stage(stage)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let headers = [("Authorization", ann.as_str())];
    let opening = app.stream("/events/room", &headers);
    let kick = async {
        gate.entered.notified().await;
        gate.revoked.store(true, SeqCst);
        let ended = app
            .events
            .channel_permission_changed(Some(&User::new("ann")), "room")
            .await;
        assert_eq!(ended, 0, "the stream was not registered yet");
        gate.proceed.notify_one();
    };
    let (mut stream, ()) = tokio::join!(opening, kick);
    let frames = stream.until_end().await;
    assert_eq!(frames.len(), 1, "one error and the end: {frames:?}");
    assert_eq!(frames[0].event(), "stream-error");
    assert_eq!(frames[0].json()["condition"], "forbidden");
    app.stop().await;
}

/// A token that has expired gets `credentials-expired` (a client may renew
/// it and reconnect from its last id), in the header and in the query, on
/// every backend and through Pushpin; a fresh token for the same user is
/// let in.
async fn an_expired_token_is_told_apart_from_a_refusal(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let expired = token("ann", -3600);
    let by_header = format!("Bearer {expired}");
    for (path, headers) in [
        (
            "/events/_ann".to_owned(),
            vec![("Authorization", by_header.as_str())],
        ),
        (format!("/events/_ann?token={expired}"), vec![]),
    ] {
        let frames = app.stream(&path, &headers).await.until_end().await;
        assert_eq!(frames.len(), 1, "{path}: {frames:?}");
        assert_eq!(frames[0].event(), "stream-error");
        assert_eq!(frames[0].id.as_deref(), Some("error"));
        assert_eq!(
            frames[0].json(),
            json!({"condition": "credentials-expired", "text": "token expired"}),
            "{path}"
        );
    }
    let fresh = format!("Bearer {}", token("ann", 600));
    let mut stream = app
        .stream("/events/_ann", &[("Authorization", &fresh)])
        .await;
    assert_eq!(stream.next_event().await.event(), "stream-open");
    app.stop().await;
}

/// The id vectors `frames` carry after the first, each with how many
/// entries it moved from the one before.
fn moves(frames: &[crate::helpers::Frame]) -> Vec<(String, usize)> {
    let vectors: Vec<Vec<(String, u64)>> = frames
        .iter()
        .filter_map(|frame| frame.id.as_deref())
        .map(|id| {
            id.split(',')
                .map(|entry| {
                    let (channel, seq) = entry.rsplit_once(':').expect("channel:seq");
                    (channel.to_owned(), seq.parse().expect("a number"))
                })
                .collect()
        })
        .collect();
    vectors
        .windows(2)
        .zip(frames.iter().filter(|frame| frame.id.is_some()).skip(1))
        .map(|(pair, frame)| {
            let moved = pair[0].iter().zip(&pair[1]).filter(|(a, b)| a != b).count();
            (frame.event().to_owned(), moved)
        })
        .collect()
}

/// Ann's stream of `a` and `b`; an event on `a` withheld from her, then
/// one on `b`: no frame moves two entries of her id vector (the withheld
/// position comes in a keep-alive), so the entry an event moves names its
/// channel (PROTOCOL.md §4.3). Live, and replayed from `a:0,b:0`.
async fn a_multi_channel_stream_moves_one_entry_per_frame_past_a_withheld_event(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let ann = format!("Bearer {}", token("ann", 600));
    let mut live = app
        .stream("/events/?channel=a&channel=b", &[("Authorization", &ann)])
        .await;
    let open = live.next_event().await;
    assert_eq!(open.event(), "stream-open");
    let skip = SendOptions::new().skip_user_ids(["ann"]);
    app.events
        .send_event_with("a", "message", &"not for ann", skip)
        .await
        .expect("send");
    app.send_event("b", json!("for ann")).await;
    let mut frames = vec![open];
    loop {
        let frame = live.next().await.expect("a frame");
        let done = frame.event() == "message";
        frames.push(frame);
        if done {
            break;
        }
    }
    let last = frames.last().expect("the event");
    assert_eq!(
        (last.id.as_deref(), last.json()),
        (Some("a:1,b:1"), json!("for ann"))
    );
    assert!(
        moves(&frames).iter().all(|(_, moved)| *moved <= 1),
        "one entry per frame: {frames:?}"
    );
    let mut replay = app
        .stream(
            "/events/?channel=a&channel=b",
            &[("Authorization", &ann), ("Last-Event-ID", "a:0,b:0")],
        )
        .await;
    let mut frames = Vec::new();
    loop {
        let frame = replay.next().await.expect("a frame");
        let done = frame.event() == "message";
        frames.push(frame);
        if done {
            break;
        }
    }
    assert_eq!(
        frames.last().and_then(|frame| frame.id.as_deref()),
        Some("a:1,b:1")
    );
    assert!(
        moves(&frames).iter().all(|(_, moved)| *moved <= 1),
        "one entry per frame on replay: {frames:?}"
    );
    app.stop().await;
}

async fn skipped_users_get_neither_the_live_event_nor_its_replay(backend: Setup) {
    let app = spawn_app(App::on(backend)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let mut ann_live = app.stream("/events/room", &[("Authorization", &ann)]).await;
    let mut anonymous = app.stream("/events/room", &[]).await;
    ann_live.next().await.expect("open");
    anonymous.next().await.expect("open");
    let skip = SendOptions::new().skip_user_ids(["ann"]);
    app.events
        .send_event_with("room", "message", &"not for ann", skip)
        .await
        .expect("send");
    app.send_event("room", json!("for everyone")).await;
    assert_eq!(anonymous.next_event().await.id.as_deref(), Some("room:1"));
    assert_eq!(anonymous.next_event().await.id.as_deref(), Some("room:2"));
    let first_for_ann = ann_live.next_event().await;
    assert_eq!(
        (first_for_ann.id.as_deref(), first_for_ann.json()),
        (Some("room:2"), json!("for everyone"))
    );
    // Replay applies the same rule.
    let mut ann_replay = app
        .stream(
            "/events/room",
            &[("Authorization", &ann), ("Last-Event-ID", "room:0")],
        )
        .await;
    ann_replay.next().await.expect("open");
    assert_eq!(ann_replay.next_event().await.id.as_deref(), Some("room:2"));
    app.stop().await;
}
