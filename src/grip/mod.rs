//! GRIP: the same stream contract served through Pushpin or Fastly Fanout.
//!
//! ```text
//! client ──► proxy ──(Grip-Sig)──► app: finite body (stream-open, resets,
//!                                        backlog) + Grip-Hold/Channel/Link
//!            proxy ◄──────────────────── publisher: POST /publish/ per send
//!            proxy ──(Grip-Last, next link)──► app: replay from storage
//! ```
//!
//! - [`signature`]: is this request really from a configured proxy?
//! - [`link`]: the signed next-link token (channels and user travel in the
//!   URL, since proxies forward no cookies or `Authorization` on it).
//! - [`instruct`]: the proxied response: body and `Grip-*` headers.
//! - [`publisher`]: one ordered queue per proxy, batching, retries, kicks;
//!   an outlet of the fan-out step, like the hub.
//! - [`pending`]: what each proxy has not been handed yet, so responses
//!   hold where the publisher's items continue.
//! - [`tail`]: when a burst ends, a hint makes streams that lost its last
//!   items at the proxy fetch them.
//!
//! This layer sits on top of the stream core: it reads the context, the
//! replay and the fan-out, and nothing below it knows GRIP exists. Its
//! settings are parsed with the rest of the configuration
//! (`config::grip`).

pub(crate) mod instruct;
pub(crate) mod link;
pub(crate) mod pending;
pub(crate) mod publisher;
pub(crate) mod signature;
pub(crate) mod tail;

use crate::wire::channel;

use std::sync::Arc;

use link::Linker;
use pending::Pending;
use signature::Verifier;

/// GRIP as configured for answering proxied requests: who may send
/// instructions and how links are signed. Managed by the stage when
/// proxies are configured; stream requests look for it in Rocket's state.
/// (The publisher is an outlet of the fan-out step, not kept here; what it
/// has in flight is, per proxy.)
#[derive(Debug)]
pub(crate) struct Grip {
    pub(crate) verifier: Verifier,
    pub(crate) linker: Linker,
    /// Per configured proxy, in the order of `grip_proxies`.
    pub(crate) pending: Vec<Arc<Pending>>,
}

/// The prefix of the proxy channel an eventstream channel is published on.
pub(crate) fn events_channel(name: &str) -> String {
    format!("events-{}", channel::quote(name))
}

/// The proxy channel of `name`'s `stream-presence` events: `presence-u-…`
/// for readers who may see users, `presence-c-…` for counts only.
pub(crate) fn presence_channel(name: &str, named: bool) -> String {
    let kind = if named { 'u' } else { 'c' };
    format!("presence-{kind}-{}", channel::quote(name))
}

/// How a user is named in proxy metadata (`user`, `skip_users`) and in the
/// kick channel `user-<key>`: percent-encoded, so ids with `,` or `;`
/// cannot break the lists, and distinct from `anonymous`.
pub(crate) fn user_key(user_id: Option<&str>) -> String {
    match user_id {
        Some(id) => format!("u-{}", channel::quote(id)),
        None => "anonymous".into(),
    }
}

/// `%` is special to the proxy's `build-id` filter; `%%` is a literal `%`.
pub(crate) fn escape_percent(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for byte in bytes {
        out.push(*byte);
        if *byte == b'%' {
            out.push(b'%');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_doubled_for_build_id() {
        assert_eq!(escape_percent(b"a%20b %I"), b"a%%20b %%I");
    }

    #[test]
    fn user_keys_are_encoded_and_distinct_from_anonymous() {
        assert_eq!(user_key(Some("ann")), "u-ann");
        assert_eq!(user_key(Some("a,b;c")), "u-a%2Cb%3Bc");
        assert_eq!(user_key(Some("anonymous")), "u-anonymous");
        assert_eq!(user_key(None), "anonymous");
    }
}
