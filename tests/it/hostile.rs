//! Hostile input, as an attacker would send it: forged tokens of every
//! kind, other users' channels, a kicked user coming back, control
//! characters in types and data, awkward channel names, too many channels,
//! huge or malformed ids and bodies, thousands of streams from one address.
//! Every time: a clear answer, no panic (the server keeps serving), nothing
//! unbounded.

use std::time::Duration;

use eventstream_rocket::{Error, SendOptions, User};
use libtest_mimic::Trial;
use serde_json::json;

use crate::helpers::{
    AnnUntilRevoked, App, LINK_KEY, PUSHPIN_SIG_KEY, Setup, Sse, TestApp, closed_port, grip_sig,
    spawn_app, token, token_with,
};

pub fn tests() -> Vec<Trial> {
    crate::trials![
        needs_nothing => [
            forged_user_tokens_are_forbidden,
            forged_grip_signatures_and_next_links_get_no_instructions,
            other_users_private_channels_are_forbidden,
            a_kicked_user_coming_back_is_refused,
            control_characters_cannot_break_frames,
            awkward_channel_names_are_escaped_or_refused,
            huge_and_malformed_last_event_ids_are_bad_requests,
            huge_publish_bodies_are_refused_unread,
            thousands_of_streams_from_one_address_are_capped,
        ],
    ]
}

/// base64url without padding, for hand-made tokens.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut word = [0_u8; 3];
        word[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, word[0], word[1], word[2]]);
        for index in 0..=chunk.len() {
            out.push(ALPHABET[(bits >> (18 - 6 * index) & 63) as usize] as char);
        }
    }
    out
}

/// An unsigned token (`alg: none`) with these claims.
fn unsigned(claims: serde_json::Value) -> String {
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", base64url(claims.to_string().as_bytes()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A token signed with another key than the server's.
fn wrongly_keyed(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-servers-secret-0123456789"),
    )
    .expect("a token")
}

/// The single frame of a refused stream at `path`.
async fn refused(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let frames = app.stream(path, headers).await.until_end().await;
    assert_eq!(
        frames.len(),
        1,
        "{path}: one error, then the end: {frames:?}"
    );
    assert_eq!(frames[0].event(), "stream-error", "{path}");
    assert_eq!(frames[0].id.as_deref(), Some("error"));
    frames[0].json()
}

/// The server still answers: nothing a test sent took it down.
async fn still_serving(app: &TestApp) {
    let mut stream = app.stream("/events/alive", &[]).await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
}

async fn forged_user_tokens_are_forbidden() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let claims = json!({ "sub": "ann", "exp": now() + 600 });
    let signed = token("ann", 60);
    let mut tampered: Vec<String> = signed.split('.').map(str::to_owned).collect();
    tampered[1] = base64url(
        json!({ "sub": "root", "exp": now() + 600 })
            .to_string()
            .as_bytes(),
    );
    // Refused, never anonymous: `forbidden`, or `credentials-expired` for a
    // genuine token past its time (a client may renew that one).
    let forged = [
        (unsigned(claims.clone()), "forbidden"),
        (wrongly_keyed(claims), "forbidden"),
        (tampered.join("."), "forbidden"),
        (token("ann", -3600), "credentials-expired"),
        (token_with(json!({ "sub": "" }), 60), "forbidden"),
        ("a.b.c".to_owned(), "forbidden"),
        ("x".repeat(8000), "forbidden"),
    ];
    for (token, condition) in forged {
        for (path, headers) in [
            (format!("/events/_private?token={token}"), vec![]),
            (
                "/events/_private".to_owned(),
                vec![format!("Bearer {token}")],
            ),
        ] {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|value| ("Authorization", value.as_str()))
                .collect();
            let error = refused(&app, &path, &headers).await;
            assert_eq!(error["condition"], condition, "{error}");
        }
    }
    still_serving(&app).await;
    app.stop().await;
}

async fn forged_grip_signatures_and_next_links_get_no_instructions() {
    let closed = closed_port();
    let app =
        spawn_app(App::on(Setup::Sqlite).grip_proxy_at(&format!("http://127.0.0.1:{closed}")))
            .await;
    let pushpin_claims = json!({ "iss": "pushpin", "exp": now() + 600 });
    for signature in [
        unsigned(pushpin_claims.clone()),
        wrongly_keyed(pushpin_claims),
        grip_sig(PUSHPIN_SIG_KEY, -600),
        grip_sig("wrong-key", 600),
    ] {
        let response = app
            .http
            .get(app.url("/events/a"))
            .header("Grip-Sig", signature)
            .send()
            .await
            .expect("an answer");
        assert!(
            response.headers().get("grip-hold").is_none(),
            "no instructions"
        );
        let mut stream = Sse::from_response(response);
        assert_eq!(
            stream.next().await.expect("served directly").event(),
            "stream-open"
        );
    }
    // A genuine proxy following a forged or expired next link gets nothing
    // to hold: an empty answer, which ends the proxied stream.
    let link_claims = json!({
        "iss": "eventstream-link", "exp": now() + 600, "channels": ["_private"], "user": "ann",
    });
    let expired_link = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "iss": "eventstream-link", "exp": now() - 600, "channels": ["a"], "user": null }),
        &jsonwebtoken::EncodingKey::from_secret(LINK_KEY.as_bytes()),
    )
    .expect("a token");
    let links = [
        unsigned(link_claims.clone()),
        wrongly_keyed(link_claims),
        expired_link,
    ];
    // On the next-link route, and as links were written before it existed.
    let paths = links.iter().flat_map(|link| {
        [
            format!("/events/_next/{link}"),
            format!("/events/?link=next&recover=true&es-meta={link}"),
        ]
    });
    for path in paths {
        let response = app
            .http
            .get(app.url(&path))
            .header("Grip-Sig", grip_sig(PUSHPIN_SIG_KEY, 600))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("grip-hold").is_none());
        assert!(response.headers().get("grip-channel").is_none());
        assert_eq!(response.text().await.expect("a body"), "");
    }
    still_serving(&app).await;
    app.stop().await;
}

async fn other_users_private_channels_are_forbidden() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let bob = format!("Bearer {}", token("bob", 60));
    for headers in [vec![], vec![("Authorization", bob.as_str())]] {
        let error = refused(&app, "/events/_user-ann", &headers).await;
        assert_eq!(error["condition"], "forbidden");
        assert_eq!(error["channels"], json!(["_user-ann"]));
    }
    let ann = format!("Bearer {}", token("ann", 60));
    let mut own = app
        .stream("/events/_user-ann", &[("Authorization", &ann)])
        .await;
    assert_eq!(own.next().await.expect("open").event(), "stream-open");
    app.stop().await;
}

async fn a_kicked_user_coming_back_is_refused() {
    let (stage, revoked) = AnnUntilRevoked::stage();
    let app = spawn_app(App::on(Setup::Sqlite).stage(stage)).await;
    let ann = format!("Bearer {}", token("ann", 60));
    let mut stream = app.stream("/events/room", &[("Authorization", &ann)]).await;
    stream.next().await.expect("open");
    app.send_event("room", json!(1)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some("room:1"));
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    app.events
        .channel_permission_changed(Some(&User::new("ann")), "room")
        .await;
    let last = stream.until_end().await;
    assert_eq!(last.last().map(|frame| frame.event()), Some("stream-error"));
    // EventSource comes back with `Last-Event-ID: error`: a plain 400 stops it.
    let response = app
        .http
        .get(app.url("/events/room"))
        .header("Authorization", &ann)
        .header("Last-Event-ID", "error")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 400);
    // A client that kept its last real id is refused as well.
    let error = refused(
        &app,
        "/events/room",
        &[("Authorization", &ann), ("Last-Event-ID", "room:1")],
    )
    .await;
    assert_eq!(error["condition"], "forbidden");
    app.stop().await;
}

async fn control_characters_cannot_break_frames() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    for event_type in [
        "a\nevent: b",
        "a\rb",
        "a\0b",
        "",
        "stream-error",
        "keep-alive",
    ] {
        let sent = app.events.send_event("c", event_type, &1).await;
        assert!(
            matches!(sent, Err(Error::InvalidEventType(_))),
            "{event_type:?}: {sent:?}"
        );
        let answer = app
            .http
            .post(app.url("/events/c"))
            .bearer_auth(crate::helpers::PUBLISH_KEY)
            .json(&json!({ "type": event_type, "data": 1 }))
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status(), 400, "{event_type:?}");
    }
    let mut stream = app.stream("/events/c", &[]).await;
    stream.next().await.expect("open");
    // Pre-encoded data goes out as written: line breaks become data lines,
    // NUL and a BOM stay inside their line.
    let raw = "one\r\ntwo\rthree\nid: 999\n\nevent: stream-error\u{0}\u{FEFF}four";
    app.events
        .send_event_with("c", "message", &raw, SendOptions::new().pre_encoded(true))
        .await
        .expect("sent");
    // JSON data carries them escaped, on one line.
    app.send_event("c", json!("a\nb\r\u{0}\u{FEFF}")).await;
    let first = stream.next_event().await;
    assert_eq!(first.event(), "message");
    assert_eq!(first.id.as_deref(), Some("c:1"), "no injected id");
    assert_eq!(
        first.data,
        "one\ntwo\nthree\nid: 999\n\nevent: stream-error\u{0}\u{FEFF}four"
    );
    let second = stream.next_event().await;
    assert_eq!(second.id.as_deref(), Some("c:2"));
    assert_eq!(second.json(), json!("a\nb\r\u{0}\u{FEFF}"));
    app.stop().await;
}

async fn awkward_channel_names_are_escaped_or_refused() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let name = "a,b:c%d ü/日本";
    let quoted = "a%2Cb%3Ac%25d%20%C3%BC/%E6%97%A5%E6%9C%AC";
    let mut stream = app
        .stream(&format!("/events/?channel={}", urlencode(name)), &[])
        .await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    assert_eq!(app.send_event(name, json!(1)).await, format!("{quoted}:1"));
    assert_eq!(stream.next_event().await.id, Some(format!("{quoted}:1")));
    // Resuming with that id finds the channel again.
    let mut resumed = app
        .stream(
            &format!("/events/?channel={}", urlencode(name)),
            &[("Last-Event-ID", &format!("{quoted}:0"))],
        )
        .await;
    resumed.next().await.expect("open");
    assert_eq!(resumed.next_event().await.id, Some(format!("{quoted}:1")));

    let long = "x".repeat(10 * 1024);
    let error = refused(&app, &format!("/events/?channel={long}"), &[]).await;
    assert_eq!(error["condition"], "bad-request");
    assert!(
        error["text"].as_str().expect("text").contains("255"),
        "{error}"
    );
    let sent = app.events.send_event(&long, "message", &1).await;
    assert!(matches!(sent, Err(Error::InvalidChannel(_))), "{sent:?}");
    let control = refused(&app, "/events/?channel=a%0Ab", &[]).await;
    assert_eq!(control["condition"], "bad-request");

    let eleven: Vec<String> = (0..11).map(|n| format!("channel=c{n}")).collect();
    let error = refused(&app, &format!("/events/?{}", eleven.join("&")), &[]).await;
    assert_eq!(error["condition"], "bad-request");
    assert!(
        error["text"]
            .as_str()
            .expect("text")
            .contains("Channel limit"),
        "{error}"
    );
    still_serving(&app).await;
    app.stop().await;
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn huge_and_malformed_last_event_ids_are_bad_requests() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let repeated = vec!["a:1"; 5000].join(",");
    let many: Vec<String> = (0..3000).map(|n| format!("c{n}:1")).collect();
    let huge_number = format!("a:{}", "9".repeat(5000));
    for id in [
        "a:1:2",
        "a:-1",
        "a:+1",
        "%FF:1",
        "a:1,",
        ",",
        ":",
        "a:0x10",
        repeated.as_str(),
        huge_number.as_str(),
    ] {
        let error = refused(&app, "/events/a", &[("Last-Event-ID", id)]).await;
        assert_eq!(error["condition"], "bad-request", "{id:.40}: {error}");
        assert!(
            error["text"]
                .as_str()
                .expect("text")
                .starts_with("Failed to parse"),
            "{error}"
        );
    }
    // Thousands of well-formed entries for channels the stream does not
    // read are only ignored: the stream is about `a`.
    let mut stream = app
        .stream("/events/a", &[("Last-Event-ID", &many.join(","))])
        .await;
    assert_eq!(stream.next().await.expect("open").event(), "stream-open");
    // A header larger than the server reads at all is refused by HTTP.
    let enormous = "b:1,".repeat(200_000);
    let answer = app
        .http
        .get(app.url("/events/a"))
        .header("Last-Event-ID", enormous)
        .send()
        .await;
    if let Ok(answer) = answer {
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap_or_default();
        assert!(
            status >= 400 || body.contains("stream-error"),
            "status {status}: {body:.200}"
        );
    }
    still_serving(&app).await;
    app.stop().await;
}

async fn huge_publish_bodies_are_refused_unread() {
    let app = spawn_app(App::on(Setup::Sqlite)).await;
    let body = format!("{{\"data\":\"{}\"}}", "x".repeat(20 * 1024 * 1024));
    let started = std::time::Instant::now();
    let answer = app
        .http
        .post(app.url("/events/c"))
        .bearer_auth(crate::helpers::PUBLISH_KEY)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(answer) => assert_eq!(answer.status(), 413),
        // The server may stop reading and close before the client has sent
        // everything; that is a refusal too.
        Err(error) => assert!(error.is_request() || error.is_body(), "{error}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let answer = app
        .http
        .post(app.url("/events/c"))
        .bearer_auth(crate::helpers::PUBLISH_KEY)
        .body("{\"data\": [1, 2")
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 400);
    still_serving(&app).await;
    app.stop().await;
}

async fn thousands_of_streams_from_one_address_are_capped() {
    const STREAMS: usize = 1500;
    const CAP: u64 = 50;
    let app = spawn_app(App::on(Setup::Sqlite).with("eventstream.max_streams_per_ip", CAP)).await;
    let opened =
        futures_util::future::join_all((0..STREAMS).map(|_| app.stream("/events/a", &[]))).await;
    let mut held = Vec::new();
    let mut deferred = 0;
    for mut stream in opened {
        assert_eq!(stream.status, 200);
        let frame = stream.next().await.expect("a first frame");
        if frame.event() == "stream-open" {
            held.push(stream);
        } else {
            assert!(frame.retry.is_some(), "{frame:?}");
            deferred += 1;
        }
    }
    assert_eq!(held.len() as u64, CAP);
    assert_eq!(deferred, STREAMS - CAP as usize);
    let metrics = app.events.metrics();
    assert_eq!(metrics.live_subscribers, CAP);
    assert_eq!(metrics.streams_deferred, (STREAMS as u64) - CAP);
    app.send_event("a", json!("to the held ones")).await;
    for stream in &mut held {
        assert_eq!(stream.next_event().await.json(), json!("to the held ones"));
    }
    app.stop().await;
}
