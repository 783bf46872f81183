//! Next links: the URL a proxy fetches to continue a stream (the next page
//! of a backlog, or recovery after a gap).
//!
//! Proxies forward no cookies, `Authorization` or `Last-Event-ID` on it, so
//! the stream's channels and user travel in the link itself, in an HS256
//! token (`es-meta`) signed with `eventstream.link_key`:
//!
//! ```text
//! /events/?link=next&recover=true&es-meta=<jwt {iss, exp, channels, user}>
//! ```

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// `iss` of link tokens, so they are never confused with user tokens.
const ISSUER: &str = "eventstream-link";

/// Characters left unescaped in query values (RFC 3986 unreserved).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What a next link carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkClaims {
    iss: String,
    exp: u64,
    /// Makes every link unique, even for identical streams.
    #[serde(default)]
    jti: u64,
    /// The stream's channels.
    pub(crate) channels: Vec<String>,
    /// The user id, `None` for anonymous.
    pub(crate) user: Option<String>,
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
    /// Tokens live an hour, or four link timeouts if that is longer, so an
    /// idle stream's link never expires between two refreshes.
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

    pub(crate) fn sign(
        &self,
        channels: &[String],
        user: Option<&str>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = LinkClaims {
            iss: ISSUER.into(),
            jti: NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            exp: jsonwebtoken::get_current_timestamp() + self.lifetime_secs,
            channels: channels.to_vec(),
            user: user.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The claims of a valid, unexpired token.
    pub(crate) fn verify(&self, token: &str) -> Result<LinkClaims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<LinkClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
    }
}

/// `<prefix><path>?name=value&...`, values percent-encoded.
pub(crate) fn next_link(prefix: &str, path: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
        .collect();
    format!("{prefix}{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_ones_fail() {
        let linker = Linker::new("link-key-0123456789abcdef", 120);
        let token = linker
            .sign(&["a".into(), "b c".into()], Some("ann"))
            .expect("signed");
        let claims = linker.verify(&token).expect("valid");
        assert_eq!(claims.channels, ["a", "b c"]);
        assert_eq!(claims.user.as_deref(), Some("ann"));
        let other = Linker::new("another-key-0123456789abcdef", 120);
        assert!(other.verify(&token).is_err());
        assert!(linker.verify("garbage").is_err());
    }

    #[test]
    fn links_encode_their_values() {
        assert_eq!(
            next_link(
                "/api",
                "/events/",
                &[("link", "next"), ("lastEventId", "a%20b:1,c:2")]
            ),
            "/api/events/?link=next&lastEventId=a%2520b%3A1%2Cc%3A2"
        );
    }
}
