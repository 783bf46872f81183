//! Next links: the URL a proxy fetches to continue a stream (the next page
//! of a backlog, recovery after a gap, a link timeout).
//!
//! Proxies forward no cookies, `Authorization` or `Last-Event-ID` on it, so
//! what decides the answer travels in the link itself, in an HS256 token
//! signed with `eventstream.link_key`, as a path segment:
//!
//! ```text
//! <grip_path_prefix><mount>/_next/<jwt {iss, exp, channels, user[, positions]}>
//! ```
//!
//! The token holds nothing else, and the same claims always sign to the
//! same token (`exp` is rounded up to a whole [`EXPIRY_STEP`]): streams in
//! the same state share one link. Pushpin 1.36 batches session updates by
//! identical link (up to 100 per update, about 10 updates a second), and
//! merges concurrent fetches by path and `Grip-Last`; a link unique per
//! response (a nonce, a fresh `exp`) made 1,000 recovering streams drain at
//! 10 a second. Everything that tells two streams apart is in the path, so
//! a merged fetch only ever serves streams that get the same answer.
//!
//! `positions` is set on backlog pages only: the proxy takes no `prev-id`
//! from a page it does not hold, so the page's link says where the next
//! one starts. A held stream's link carries no positions; the proxy's
//! `Grip-Last` (where that stream really is) says it.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::wire::event_id::IdVector;

/// `iss` of link tokens, so they are never confused with user tokens.
const ISSUER: &str = "eventstream-link";

/// The path segment, under the mount, of the next-link route.
pub(crate) const NEXT_SEGMENT: &str = "_next";

/// Link expiry is rounded up to a multiple of this many seconds, so links
/// signed within the same step are identical.
pub(crate) const EXPIRY_STEP: u64 = 600;

/// What a next link carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkClaims {
    iss: String,
    exp: u64,
    /// The stream's channels.
    pub(crate) channels: Vec<String>,
    /// The user id, `None` for anonymous.
    pub(crate) user: Option<String>,
    /// Where a backlog page ended, per persistent channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) positions: Option<BTreeMap<String, u64>>,
    /// The stream asked for `stream-presence` events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) presence: bool,
}

impl LinkClaims {
    /// The positions the link carries, as an id vector.
    pub(crate) fn positions(&self) -> IdVector {
        let mut positions = IdVector::new();
        for (channel, seq) in self.positions.iter().flatten() {
            positions.set(channel.clone(), *seq);
        }
        positions
    }
}

/// Signs and checks link tokens.
pub(crate) struct Linker {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime_secs: u64,
}

impl std::fmt::Debug for Linker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linker")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

impl Linker {
    /// Tokens live at least an hour, or four link timeouts if that is
    /// longer, so an idle stream's link never expires between two
    /// refreshes.
    pub(crate) fn new(secret: &str, link_timeout_secs: u64) -> Linker {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        Linker {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            lifetime_secs: 3600.max(4 * link_timeout_secs),
        }
    }

    /// The token for a stream of `channels` read by `user` (watching
    /// presence or not); `positions` only for a backlog page.
    pub(crate) fn sign(
        &self,
        channels: &[String],
        user: Option<&str>,
        positions: Option<&IdVector>,
        presence: bool,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let expires = jsonwebtoken::get_current_timestamp() + self.lifetime_secs;
        let claims = LinkClaims {
            iss: ISSUER.into(),
            exp: expires.div_ceil(EXPIRY_STEP) * EXPIRY_STEP,
            channels: channels.to_vec(),
            user: user.map(str::to_owned),
            positions: positions.map(|positions| {
                positions
                    .iter()
                    .map(|(channel, seq)| (channel.to_owned(), seq))
                    .collect()
            }),
            presence,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The claims of a valid, unexpired token.
    pub(crate) fn verify(&self, token: &str) -> Result<LinkClaims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<LinkClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
    }
}

/// `<prefix><mount>/_next/<token>`. A JWT is base64url and dots, safe in a
/// path segment as it is.
pub(crate) fn next_link(prefix: &str, mount: &str, token: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    format!("{prefix}{mount}/{NEXT_SEGMENT}/{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_ones_fail() {
        let linker = Linker::new("link-key-0123456789abcdef", 120);
        let mut positions = IdVector::new();
        positions.set("a", 7);
        let token = linker
            .sign(
                &["a".into(), "b c".into()],
                Some("ann"),
                Some(&positions),
                false,
            )
            .expect("signed");
        let claims = linker.verify(&token).expect("valid");
        assert_eq!(claims.channels, ["a", "b c"]);
        assert_eq!(claims.user.as_deref(), Some("ann"));
        assert_eq!(claims.positions(), positions);
        let other = Linker::new("another-key-0123456789abcdef", 120);
        assert!(other.verify(&token).is_err());
        assert!(linker.verify("garbage").is_err());
    }

    #[test]
    fn streams_in_the_same_state_share_one_link() {
        let linker = Linker::new("link-key-0123456789abcdef", 120);
        let sign = |user: Option<&str>| {
            linker
                .sign(&["a".into()], user, None, false)
                .expect("signed")
        };
        // Signed at different moments within one expiry step (a test
        // crossing a step boundary signs again).
        let (first, second) = loop {
            let step = jsonwebtoken::get_current_timestamp() / EXPIRY_STEP;
            let pair = (sign(None), sign(None));
            if jsonwebtoken::get_current_timestamp() / EXPIRY_STEP == step {
                break pair;
            }
        };
        assert_eq!(first, second);
        assert_ne!(first, sign(Some("ann")), "users never share a link");
        let claims = linker.verify(&first).expect("valid");
        assert_eq!(claims.exp % EXPIRY_STEP, 0);
        assert!(claims.positions.is_none());
    }

    #[test]
    fn links_are_one_path_under_the_mount() {
        assert_eq!(next_link("", "/events", "x.y.z"), "/events/_next/x.y.z");
        assert_eq!(next_link("/api/", "/events", "t"), "/api/events/_next/t");
    }
}
