use super::*;
use crate::measure::metrics::Metrics;

fn presence(interval_ms: u64) -> Arc<Presence> {
    let hub = Arc::new(Hub::new(Arc::new(Metrics::default())));
    Presence::new(
        Settings {
            interval: Duration::from_millis(interval_ms),
            list_max: 2,
            lease: Duration::from_secs(3),
            proxied_lease: Duration::from_secs(5),
        },
        hub,
    )
}

fn channels(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

const LISTED: PresenceRule = PresenceRule::MEMBER;

#[test]
fn joins_and_leaves_move_the_counts() {
    let presence = presence(1000);
    let room = channels(&["room"]);
    let ana = User::new("ana");
    let (first, _) = presence.attend(Some(&ana), &room, &[LISTED], false);
    let (second, _) = presence.attend(Some(&ana), &room, &[LISTED], false);
    let (anonymous, _) = presence.attend(None, &room, &[LISTED], false);
    let now = presence.answer("room");
    assert_eq!(
        (now.streams, now.users, now.listed.clone()),
        (3, 1, vec!["ana".to_owned()])
    );
    drop(first);
    drop(anonymous);
    assert_eq!(presence.answer("room").streams, 1);
    drop(second);
    assert_eq!(
        presence.answer("room"),
        ChannelPresence {
            channel: "room".into(),
            streams: 0,
            users: 0,
            listed: Vec::new(),
            truncated: false,
        }
    );
}

#[test]
fn unlisted_users_are_counted_and_never_named() {
    let presence = presence(1000);
    let room = channels(&["room"]);
    let hidden = PresenceRule {
        listed: false,
        ..LISTED
    };
    let (_a, _) = presence.attend(Some(&User::new("ana")), &room, &[LISTED], false);
    let (_b, _) = presence.attend(Some(&User::new("bob")), &room, &[hidden], false);
    let now = presence.answer("room");
    assert_eq!((now.users, now.listed), (2, vec!["ana".to_owned()]));
}

#[test]
fn lists_are_capped() {
    let presence = presence(1000);
    let room = channels(&["room"]);
    let attendances: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| presence.attend(Some(&User::new(*id)), &room, &[LISTED], false))
        .collect();
    let now = presence.answer("room");
    assert_eq!((now.users, now.listed.len(), now.truncated), (3, 2, true));
    drop(attendances);
}

#[test]
fn another_instances_report_counts_until_its_lease_ends() {
    let presence = presence(1000);
    let report = PresenceReport {
        lease_ms: 1000,
        reset: false,
        channels: vec![ChannelReport {
            channel: "room".into(),
            streams: 4,
            users: vec![("ana".into(), true)],
            ..ChannelReport::default()
        }],
        digest: None,
    };
    assert!(!presence.heard(9, report));
    let (_local, _) = presence.attend(
        Some(&User::new("ana")),
        &channels(&["room"]),
        &[LISTED],
        false,
    );
    let now = presence.answer("room");
    assert_eq!(
        (now.streams, now.users),
        (5, 1),
        "ana on two instances is one user"
    );
    let mut state = presence.state();
    presence.expire(&mut state, Instant::now() + Duration::from_millis(1001));
    assert_eq!(state.view("room", 10).streams, 1);
}

#[test]
fn a_digest_that_disagrees_asks_for_a_full_report() {
    let sender = presence(1000);
    sender.set_origin(1);
    let receiver = presence(1000);
    let (_a, _) = sender.attend(Some(&User::new("ana")), &channels(&["a"]), &[LISTED], false);
    let parts = sender.report_changes();
    // The first report is lost; the second (and the heartbeat) disagree.
    let (_b, _) = sender.attend(None, &channels(&["b"]), &[LISTED], false);
    for part in sender.report_changes() {
        assert!(receiver.heard(1, part), "the digest shows what was missed");
    }
    assert!(
        !receiver.heard(1, sender.heartbeat().expect("nothing is going out")),
        "asked once per third of a lease"
    );
    sender.full_report_due();
    let full = sender.report_changes();
    assert!(full[0].reset);
    for part in full {
        assert!(!receiver.heard(1, part));
    }
    assert_eq!(receiver.answer("a").streams, 1);
    assert_eq!(receiver.answer("b").streams, 1);
    drop(parts);
}

#[test]
fn without_a_bus_nothing_is_kept_for_reports() {
    let presence = presence(1000);
    for n in 0..100 {
        let (attendance, _) =
            presence.attend(None, &channels(&[&format!("c{n}")]), &[LISTED], false);
        drop(attendance);
    }
    presence.tick();
    let state = presence.state();
    assert!(state.unreported.is_empty() && state.local.is_empty() && state.unannounced.is_empty());
}

#[test]
fn nothing_changed_reports_nothing() {
    let presence = presence(1000);
    presence.set_origin(1);
    assert!(presence.report_changes().is_empty());
    let (attendance, _) = presence.attend(None, &channels(&["a"]), &[LISTED], false);
    assert_eq!(presence.report_changes().len(), 1);
    assert!(presence.report_changes().is_empty());
    drop(attendance);
    let gone = presence.report_changes();
    assert!(
        gone[0].channels[0].is_empty(),
        "a channel emptied is reported as such"
    );
}

#[test]
fn proxied_readers_count_once_per_user_until_their_lease_ends() {
    let presence = presence(1000);
    let room = channels(&["room"]);
    presence.sighted(Some(&User::new("ana")), &room, &[LISTED], false);
    presence.sighted(Some(&User::new("ana")), &room, &[LISTED], false);
    presence.sighted(None, &room, &[LISTED], false);
    let now = presence.answer("room");
    assert_eq!((now.streams, now.users), (2, 1));
    let mut state = presence.state();
    presence.expire(&mut state, Instant::now() + Duration::from_secs(6));
    assert_eq!(state.view("room", 10).streams, 0);
    assert_eq!(state.proxied_count, 0);
}

#[test]
fn a_burst_of_joins_is_one_event_per_tick() {
    let presence = presence(1000);
    let room = channels(&["room"]);
    let (_viewer, snapshots) = presence.attend(Some(&User::new("v")), &room, &[LISTED], true);
    assert_eq!(snapshots.len(), 1);
    let joined: Vec<_> = (0..1000)
        .map(|n| presence.attend(Some(&User::new(format!("u{n}"))), &room, &[LISTED], false))
        .collect();
    assert_eq!(presence.tick(), 1);
    assert_eq!(presence.tick(), 0, "nothing changed since");
    drop(joined);
    assert_eq!(presence.tick(), 1);
}

/// Counts what it is given to publish.
#[derive(Default)]
struct Proxy(std::sync::atomic::AtomicUsize);

impl ProxiedPresence for Proxy {
    fn presence(&self, _channel: &str, _counts: &Bytes, _named: &Bytes) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn only_the_lowest_instance_publishes_proxied_events() {
    let room = channels(&["room"]);
    let published = |origin: u64, other: u64| {
        let presence = presence(1000);
        let proxy = Arc::new(Proxy::default());
        presence.publish_to(Arc::clone(&proxy) as Arc<dyn ProxiedPresence>);
        presence.set_origin(origin);
        let alive = PresenceReport {
            lease_ms: 10_000,
            reset: false,
            channels: Vec::new(),
            digest: None,
        };
        presence.heard(other, alive);
        presence.sighted(None, &room, &[LISTED], true);
        let snapshots = presence.snapshots(&room, &[LISTED]);
        assert_eq!(snapshots.len(), 1, "the first answer carries a snapshot");
        presence.sighted(Some(&User::new("ana")), &room, &[LISTED], false);
        presence.tick();
        proxy.0.load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(published(1, 2), 1);
    assert_eq!(published(3, 2), 0, "instance 2 publishes");
}

#[test]
fn a_stream_that_fell_behind_gets_the_whole_list_not_the_last_change() {
    use crate::delivery::hub::InboxLimits;
    let presence = presence(1000);
    let room = channels(&["room"]);
    let registration = presence.hub.subscribe(
        Some("v".into()),
        room.clone(),
        InboxLimits {
            entries: 16,
            bytes: 1 << 16,
        },
    );
    registration.watch_presence(vec![PresenceView::Users]);
    let (_viewer, _) = presence.attend(Some(&User::new("v")), &room, &[LISTED], true);
    // Two rounds while the stream writes nothing: bob's change, then cat's.
    let (_bob, _) = presence.attend(Some(&User::new("bob")), &room, &[LISTED], false);
    presence.tick();
    let (_cat, _) = presence.attend(Some(&User::new("cat")), &room, &[LISTED], false);
    presence.tick();
    let mail = registration.take(&mut std::collections::VecDeque::new());
    assert_eq!(mail.presence.len(), 1, "one frame waits per channel");
    let text = String::from_utf8(mail.presence[0].1.to_vec()).expect("UTF-8");
    assert!(
        text.contains(r#""present":["bob","cat"]"#),
        "bob's join must not be lost: {text}"
    );
}

#[test]
fn a_large_report_goes_out_over_rounds() {
    let sender = presence(1000);
    sender.set_origin(1);
    let receiver = presence(1000);
    // Enough channels for many parts.
    let attendances: Vec<_> = (0..20_000)
        .map(|n| {
            sender.attend(
                None,
                &channels(&[&format!("channel-{n:05}")]),
                &[LISTED],
                false,
            )
        })
        .collect();
    let mut rounds = 0;
    loop {
        let parts = sender.report_changes();
        if parts.is_empty() {
            break;
        }
        assert!(parts.len() <= PARTS_PER_ROUND);
        rounds += 1;
        assert!(sender.heartbeat().is_none() || parts.last().is_some_and(|p| p.digest.is_some()));
        for part in parts {
            assert!(
                !receiver.heard(1, part),
                "every part arrived: the digest agrees"
            );
        }
    }
    assert!(rounds > 1, "{rounds} round(s)");
    assert_eq!(receiver.answer("channel-19999").streams, 1);
    assert!(sender.heartbeat().is_some());
    drop(attendances);
}
