//! GRIP specifics against a real Pushpin: instructions only for verified
//! proxies, keep-alives, kicks, recovery after an app restart, and counted
//! publish failures. (The stream contract itself runs through Pushpin in
//! every test listed under `on_every_path`.)

use std::time::Duration;

use serde_json::json;

use eventstream_rocket::User;
use libtest_mimic::Trial;

use crate::helpers::{
    AnnUntilRevoked, App, LINK_KEY, PUSHPIN_SIG_KEY, Pushpin, Relay, Setup, Sse, TestApp,
    closed_port, grip_proxies, grip_sig, spawn_app, token,
};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_pushpin => [
            only_a_verified_grip_sig_gets_grip_instructions,
            next_links_carry_the_proxys_path_prefix,
            keep_alives_arrive_through_pushpin,
            revoking_permission_kicks_proxied_streams_of_that_user_only,
            an_app_restart_while_clients_stay_on_pushpin_loses_nothing,
            streams_in_the_same_state_share_one_next_link,
            backlog_pages_are_not_held_and_name_where_they_end,
            a_recovery_while_the_publisher_is_behind_loses_nothing,
        ],
        needs_nothing => [
            publish_failures_are_retried_counted_and_do_not_block_sends,
            presence_subscriptions_fit_in_the_proxys_limit,
        ],
    ]
}

async fn only_a_verified_grip_sig_gets_grip_instructions() {
    let app = spawn_app(App::on(Setup::Pushpin)).await;
    // Straight to the app, a forged or wrongly keyed header is direct mode.
    for forged in [
        "forged.by.client".to_owned(),
        grip_sig("wrong-key", 60),
        grip_sig(PUSHPIN_SIG_KEY, -120),
    ] {
        let response = app
            .http
            .get(format!("{}/events/a", app.origin))
            .header("Grip-Sig", forged)
            .send()
            .await
            .expect("response");
        assert!(response.headers().get("grip-hold").is_none());
        let mut stream = Sse::from_response(response);
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
        app.send_event("a", json!("live, not held")).await;
        assert_eq!(stream.next_event().await.json(), json!("live, not held"));
    }
    // A valid one gets a finite body and the instructions (once Pushpin
    // has every event: one still on its way is left to the publisher).
    app.send_event("b c", json!(1)).await;
    published(&app, 4).await;
    let response = app
        .http
        .get(format!(
            "{}/events/?channel=b%20c&channel=live-x",
            app.origin
        ))
        .header("Grip-Sig", grip_sig(PUSHPIN_SIG_KEY, 60))
        .header("Last-Event-ID", "b%20c:0")
        .send()
        .await
        .expect("response");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("grip-hold"), "stream");
    assert_eq!(
        header("grip-channel"),
        "events-b%20c; prev-id=1; filter=build-id; filter=skip-users, events-live-x; filter=skip-users, user-anonymous; filter=require-sub; filter=build-id, eventstream-lease"
    );
    assert_eq!(
        header("grip-set-meta"),
        "id_format=\"b%%20c:%(events-b%20c)s\", user=\"anonymous\""
    );
    assert_eq!(
        header("grip-keep-alive"),
        "event: keep-alive\\ndata:\\n\\n; format=cstring; timeout=20"
    );
    let link = header("grip-link");
    assert!(link.starts_with("</events/_next/"), "{link}");
    assert!(link.ends_with(">; rel=next; timeout=120"), "{link}");
    let claims = link_claims(&link);
    assert_eq!(claims["channels"], json!(["b c", "live-x"]));
    assert_eq!(claims["user"], json!(null));
    assert!(claims.get("positions").is_none(), "{claims}");
    let body = response.text().await.expect("a finite body");
    assert_eq!(
        body,
        "id: b%%20c:0\nevent: stream-open\ndata:\n\nid: b%%20c:1\nevent: message\ndata: 1\n\n",
        "% is escaped for the proxy's build-id filter"
    );
    app.stop().await;
}

async fn next_links_carry_the_proxys_path_prefix() {
    let app =
        spawn_app(App::on(Setup::Pushpin).with("eventstream.grip_path_prefix", "/api/")).await;
    let response = app
        .http
        .get(format!("{}/events/a", app.origin))
        .header("Grip-Sig", grip_sig(PUSHPIN_SIG_KEY, 60))
        .send()
        .await
        .expect("response");
    let link = response
        .headers()
        .get("grip-link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(link.starts_with("</api/events/_next/"), "{link}");
    app.stop().await;
}

async fn keep_alives_arrive_through_pushpin() {
    let app = spawn_app(App::on(Setup::Pushpin).with("eventstream.keepalive_secs", 1)).await;
    let mut stream = app.stream("/events/quiet", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    let frame = stream
        .next_within(Duration::from_secs(5))
        .await
        .expect("a keep-alive");
    assert_eq!(frame.event(), "keep-alive");
    app.stop().await;
}

async fn revoking_permission_kicks_proxied_streams_of_that_user_only() {
    let (stage, revoked) = AnnUntilRevoked::stage();
    let app = spawn_app(App::on(Setup::Pushpin).stage(stage)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let bob = format!("Bearer {}", token("bob", 60));
    let mut ann_stream = app.stream("/events/room", &[("Authorization", &ann)]).await;
    let mut bob_stream = app.stream("/events/room", &[("Authorization", &bob)]).await;
    for stream in [&mut ann_stream, &mut bob_stream] {
        assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    }
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    app.events
        .channel_permission_changed(Some(&User::new("ann")), "room")
        .await;
    let frames = ann_stream.until_end().await;
    assert_eq!(
        frames.len(),
        1,
        "one error, then the proxy closes the stream: {frames:?}"
    );
    assert_eq!(frames[0].event(), "stream-error");
    assert_eq!(
        frames[0].json(),
        json!({"condition": "forbidden", "text": "Permission denied to channels: room", "channels": ["room"]})
    );
    app.send_event("room", json!("bob still listens")).await;
    assert_eq!(
        bob_stream.next_event().await.json(),
        json!("bob still listens")
    );
    app.stop().await;
}

async fn an_app_restart_while_clients_stay_on_pushpin_loses_nothing() {
    let app = spawn_app(App::on(Setup::Pushpin)).await;
    let mut stream = app.stream("/events/r", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    app.send_event("r", json!(1)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some("r:1"));

    // The app goes away; Pushpin keeps the client. Events are stored by an
    // instance that publishes to no proxy, as if the app had crashed
    // between commit and publish.
    let (pushpin, database) = app.stop_app_only().await;
    let bystander = spawn_app(App::sharing_database(&database.url)).await;
    for n in 2..=4 {
        bystander.send_event("r", json!(n)).await;
    }
    bystander.stop().await;

    // Back up behind the same Pushpin: at start it asks Pushpin to make
    // every client recover.
    let app = spawn_app(App::on_database(database).pushpin(pushpin)).await;
    for n in 2..=4 {
        let event = stream.next_event().await;
        assert_eq!(
            (event.id.clone(), event.json()),
            (Some(format!("r:{n}")), json!(n))
        );
    }
    app.send_event("r", json!(5)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some("r:5"));
    app.stop().await;
}

async fn publish_failures_are_retried_counted_and_do_not_block_sends() {
    let closed = closed_port();
    let app =
        spawn_app(App::on(Setup::Sqlite).grip_proxy_at(&format!("http://127.0.0.1:{closed}")))
            .await;
    let started = std::time::Instant::now();
    assert_eq!(app.send_event("c", json!(1)).await, "c:1");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "send does not wait for the proxy"
    );
    app.wait_for_metrics(
        "the failure was never given up and counted",
        Duration::from_secs(30),
        |metrics| metrics.grip_failed > 0,
    )
    .await;
    let metrics = app.events.metrics();
    assert!(metrics.grip_retries >= 5, "{metrics:?}");
    assert_eq!(metrics.grip_published, 0);
    app.stop().await;
}

/// The claims of the token in a `Grip-Link` header, checked against the
/// link key.
fn link_claims(link: &str) -> serde_json::Value {
    let token = link
        .split_once("/_next/")
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(token, _)| token)
        .unwrap_or_else(|| panic!("no token in {link}"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iss"]);
    jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(LINK_KEY.as_bytes()),
        &validation,
    )
    .unwrap_or_else(|e| panic!("{link}: {e}"))
    .claims
}

/// What the app answers a proxy at `path` (straight to the origin, signed
/// as Pushpin signs): the `Grip-*` headers and the body.
async fn proxied(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (Vec<(String, String)>, String) {
    let mut request = app
        .http
        .get(format!("{}{path}", app.origin))
        .header("Grip-Sig", grip_sig(PUSHPIN_SIG_KEY, 60));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("response");
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("grip-"))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (headers, response.text().await.expect("a finite body"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(found, _)| found == name)
        .map(|(_, value)| value.as_str())
}

/// Waits until Pushpin has accepted `items` items from the app.
async fn published(app: &TestApp, items: u64) {
    app.wait_for_metrics(
        &format!("Pushpin never accepted {items} items"),
        Duration::from_secs(15),
        |metrics| metrics.grip_published >= items,
    )
    .await;
}

/// The path of a `Grip-Link` value: `</events/_next/...>; rel=next`.
fn link_path(link: &str) -> &str {
    link.trim_start_matches('<')
        .split_once('>')
        .map_or(link, |(path, _)| path)
}

async fn streams_in_the_same_state_share_one_next_link() {
    // Pushpin batches session updates by identical link (100 at a time,
    // about 10 batches a second): a link unique per response made 1,000
    // recovering streams drain at 10 a second.
    let app = spawn_app(App::on(Setup::Pushpin)).await;
    let (first, _) = proxied(&app, "/events/s", &[]).await;
    let (second, _) = proxied(&app, "/events/?channel=s", &[]).await;
    let link = header(&first, "grip-link").expect("a link").to_owned();
    assert_eq!(Some(link.as_str()), header(&second, "grip-link"));
    let ann = format!("Bearer {}", token("ann", 60));
    let (anns, _) = proxied(&app, "/events/s", &[("Authorization", ann.as_str())]).await;
    let anns_link = header(&anns, "grip-link").expect("a link");
    assert_ne!(
        anns_link, link,
        "a user's streams never share another's link"
    );
    assert_eq!(link_claims(anns_link)["user"], json!("ann"));
    // A channel without events is held before its first one, so the proxy
    // checks even the first item.
    assert_eq!(
        header(&first, "grip-channel"),
        Some(
            "events-s; prev-id=0; filter=build-id; filter=skip-users, user-anonymous; filter=require-sub; filter=build-id, eventstream-lease"
        )
    );

    // Following the shared link continues from where the proxy says this
    // stream is (once Pushpin has the events: what is still on its way is
    // left to the publisher).
    for n in 1..=3 {
        app.send_event("s", json!(n)).await;
    }
    published(&app, 3).await;
    let (next, body) = proxied(
        &app,
        link_path(&link),
        &[("Grip-Last", "events-s; last-id=1")],
    )
    .await;
    assert_eq!(
        body,
        "id: s:2\nevent: message\ndata: 2\n\nid: s:3\nevent: message\ndata: 3\n\n"
    );
    assert_eq!(header(&next, "grip-hold"), Some("stream"));
    assert!(
        header(&next, "grip-channel")
            .is_some_and(|channels| channels.starts_with("events-s; prev-id=3;")),
        "{next:?}"
    );
    assert_eq!(header(&next, "grip-link"), Some(link.as_str()));

    // Only a proxy follows next links.
    let direct = app
        .http
        .get(format!("{}{}", app.origin, link_path(&link)))
        .send()
        .await
        .expect("response");
    let mut stream = Sse::from_response(direct);
    let error = stream.next().await.expect("an error frame");
    assert_eq!(error.event(), "stream-error");
    assert_eq!(error.json()["condition"], "bad-request");
    app.stop().await;
}

async fn backlog_pages_are_not_held_and_name_where_they_end() {
    // Pushpin follows a link without a hold at once (no timeout, no update
    // rate limit) but takes no `prev-id` from it: the page's link says
    // where the next page starts.
    let app = spawn_app(App::on(Setup::Pushpin).with("eventstream.replay_page", 2)).await;
    for n in 1..=5 {
        app.send_event("p", json!(n)).await;
    }
    published(&app, 5).await;
    let (first, body) = proxied(&app, "/events/p", &[("Last-Event-ID", "p:0")]).await;
    assert_eq!(
        body,
        "id: p:0\nevent: stream-open\ndata:\n\nid: p:1\nevent: message\ndata: 1\n\nid: p:2\nevent: message\ndata: 2\n\n"
    );
    assert_eq!(header(&first, "grip-hold"), None, "{first:?}");
    assert_eq!(header(&first, "grip-channel"), None, "{first:?}");
    let link = header(&first, "grip-link").expect("a link").to_owned();
    assert!(
        link.ends_with(">; rel=next"),
        "no timeout on a page: {link}"
    );
    assert_eq!(link_claims(&link)["positions"], json!({ "p": 2 }));

    // Pushpin still sends the stream's old position: the link's wins.
    let (second, body) = proxied(
        &app,
        link_path(&link),
        &[("Grip-Last", "events-p; last-id=0")],
    )
    .await;
    assert_eq!(
        body,
        "id: p:3\nevent: message\ndata: 3\n\nid: p:4\nevent: message\ndata: 4\n\n"
    );
    assert_eq!(header(&second, "grip-hold"), None);
    let link = header(&second, "grip-link").expect("a link").to_owned();

    let (last, body) = proxied(&app, link_path(&link), &[]).await;
    assert_eq!(body, "id: p:5\nevent: message\ndata: 5\n\n");
    assert_eq!(header(&last, "grip-hold"), Some("stream"));
    assert!(
        header(&last, "grip-channel")
            .is_some_and(|channels| channels.starts_with("events-p; prev-id=5;")),
        "{last:?}"
    );
    let held_link = header(&last, "grip-link").expect("a link");
    assert!(
        held_link.ends_with(">; rel=next; timeout=120"),
        "{held_link}"
    );
    assert!(link_claims(held_link).get("positions").is_none());

    // And through a real Pushpin, a client resuming far behind gets every
    // page in order, then live events.
    let mut stream = app.stream("/events/p", &[("Last-Event-ID", "p:0")]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    for n in 1..=5 {
        assert_eq!(stream.next_event().await.json(), json!(n));
    }
    app.send_event("p", json!(6)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some("p:6"));
    app.stop().await;
}

async fn a_recovery_while_the_publisher_is_behind_loses_nothing() {
    // The app's publishes reach Pushpin through a relay the test can hold.
    let pushpin = Pushpin::reserve();
    let relay = Relay::start(&pushpin.control).await;
    let control = pushpin.control.clone();
    let app = spawn_app(
        App::on(Setup::Pushpin)
            .pushpin(pushpin)
            .with("eventstream.grip_proxies", grip_proxies(&relay.url)),
    )
    .await;
    let mut stream = app.stream("/events/behind", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    app.send_event("behind", json!(1)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some("behind:1"));

    // Stored, but not yet at Pushpin.
    relay.pause();
    for n in 2..=3 {
        app.send_event("behind", json!(n)).await;
    }
    // Every held stream follows its next link now, while the publisher is
    // behind: it is held where the publisher's items will continue.
    let answered = app.events.metrics().grip_next_links;
    let recover = app
        .http
        .post(format!("{control}/recover"))
        .header("Content-Length", "0")
        .send()
        .await
        .expect("Pushpin answers");
    assert!(recover.status().is_success(), "{}", recover.status());
    app.wait_for_metrics(
        "Pushpin never followed the link",
        Duration::from_secs(15),
        |metrics| metrics.grip_next_links != answered,
    )
    .await;
    relay.resume();
    app.send_event("behind", json!(4)).await;
    for n in 2..=4 {
        let event = stream.next_event().await;
        assert_eq!(
            (event.id.clone(), event.json()),
            (Some(format!("behind:{n}")), json!(n))
        );
    }
    app.stop().await;
}

/// A proxied stream that asks for presence takes a second subscription per
/// channel: up to 9 channels it gets them (with names: the test authorizer
/// lets readers see users), beyond that it is refused, rather than have the
/// proxy drop subscriptions silently.
async fn presence_subscriptions_fit_in_the_proxys_limit() {
    let closed = closed_port();
    let app =
        spawn_app(App::on(Setup::Sqlite).grip_proxy_at(&format!("http://127.0.0.1:{closed}")))
            .await;
    let path = |channels: usize| {
        let query: Vec<String> = (0..channels).map(|n| format!("channel=c{n}")).collect();
        format!("/events/?{}&presence=1", query.join("&"))
    };
    let (headers, body) = proxied(&app, &path(9), &[]).await;
    let subscriptions = header(&headers, "grip-channel").expect("held");
    assert_eq!(
        subscriptions.matches("presence-u-").count(),
        9,
        "{subscriptions}"
    );
    assert_eq!(subscriptions.split(", ").count(), 20, "{subscriptions}");
    assert_eq!(body.matches("event: stream-presence").count(), 9, "{body}");

    let (headers, body) = proxied(&app, &path(10), &[]).await;
    assert_eq!(header(&headers, "grip-hold"), None);
    assert!(
        body.contains("stream-error") && body.contains("presence=1 allows at most 9"),
        "{body}"
    );
    app.stop().await;
}
