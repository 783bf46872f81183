//! The `stream-presence` frame: live only, without an `id:` line, so it
//! never moves a client's resume position.
//!
//! ```text
//! event: stream-presence
//! data: {"channel":"room","streams":3,"users":2,"present":["ana"],"truncated":false}   (on open)
//! data: {"channel":"room","streams":4,"users":3,"joined":["bob"],"left":[],"truncated":false}
//! ```
//!
//! A reader who may see counts only gets `channel`, `streams` and `users`.
//! A stream that fell behind (a change still waiting) and streams held by
//! a proxy get the whole list (`present`) instead of a change.

use bytes::Bytes;
use serde_json::json;

use super::answer::ChannelPresence;

fn frame(data: &serde_json::Value) -> Bytes {
    // serde_json writes no raw line breaks: one `data:` line.
    Bytes::from(format!("event: stream-presence\ndata: {data}\n\n"))
}

/// What a new stream is told first: the counts, and (`named`) who is
/// there, at most `list_max` of them.
pub(crate) fn snapshot(now: &ChannelPresence, named: bool, list_max: usize) -> Bytes {
    if !named {
        return counts(now);
    }
    frame(&json!({
        "channel": now.channel,
        "streams": now.streams,
        "users": now.users,
        "present": &now.listed[..now.listed.len().min(list_max)],
        "truncated": now.truncated || now.listed.len() > list_max,
    }))
}

/// The counts only.
pub(crate) fn counts(now: &ChannelPresence) -> Bytes {
    frame(&json!({
        "channel": now.channel,
        "streams": now.streams,
        "users": now.users,
    }))
}

/// The counts, and who joined and left since the previous event; each
/// list at most `list_max` long (`truncated` says one was cut).
pub(crate) fn change(
    now: &ChannelPresence,
    joined: &[&str],
    left: &[&str],
    list_max: usize,
) -> Bytes {
    let cut = joined.len() > list_max || left.len() > list_max;
    frame(&json!({
        "channel": now.channel,
        "streams": now.streams,
        "users": now.users,
        "joined": &joined[..joined.len().min(list_max)],
        "left": &left[..left.len().min(list_max)],
        "truncated": cut,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presence_frame_is_one_event_without_an_id() {
        let now = ChannelPresence {
            channel: "a\nb".into(),
            streams: 2,
            users: 1,
            listed: vec!["ana".into()],
            truncated: false,
        };
        for frame in [
            snapshot(&now, true, 10),
            counts(&now),
            change(&now, &["ana"], &[], 10),
        ] {
            let text = std::str::from_utf8(&frame).expect("UTF-8");
            assert!(
                text.starts_with("event: stream-presence\ndata: {"),
                "{text}"
            );
            assert_eq!(text.matches('\n').count(), 3, "{text:?}");
            assert!(!text.contains("id:"));
        }
        let cut = change(&now, &["a", "b", "c"], &[], 2);
        assert!(
            std::str::from_utf8(&cut)
                .expect("UTF-8")
                .contains("\"truncated\":true")
        );
    }
}
