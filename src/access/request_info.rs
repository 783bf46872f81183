//! What a request says about itself: its query parameters, its bearer
//! credentials and where it comes from. Streams, the identity, GRIP and the
//! publish API all read requests through these functions, so they agree on
//! every corner case (repeated parameters, the scheme's case, surrounding
//! spaces, which forwarded address to believe).

use std::net::IpAddr;

use rocket::Request;

/// Every value of the query parameter `name`, percent-decoded, in order.
pub(crate) fn query_values<'r>(request: &'r Request<'_>, name: &str) -> Vec<&'r str> {
    request
        .query_fields()
        .filter(|field| field.name == name)
        .map(|field| field.value)
        .collect()
}

/// The credential of an `Authorization: Bearer <credential>` header value:
/// `None` when the scheme is not `Bearer` (in any case) or nothing follows it.
pub(crate) fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, credential) = authorization.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// The client's address: the peer's, or, when a trusted proxy in front
/// sets `trusted_header`, the address it put there. For a list header such
/// as `X-Forwarded-For` that is the rightmost entry (the one the proxy
/// appended; anything left of it came from the client). A request without a
/// readable header falls back to the peer address.
pub(crate) fn client_address(
    request: &Request<'_>,
    trusted_header: Option<&str>,
) -> Option<IpAddr> {
    trusted_header
        .and_then(|name| request.headers().get(name).last())
        .and_then(rightmost_address)
        .or_else(|| request.remote().map(|peer| peer.ip()))
}

/// The last comma-separated entry of a forwarding header, as an address.
pub(crate) fn rightmost_address(value: &str) -> Option<IpAddr> {
    value.rsplit(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_needs_the_scheme_and_a_credential() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("  bearer   abc  "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn the_rightmost_forwarded_address_counts() {
        let ip = |text: &str| text.parse::<IpAddr>().ok();
        assert_eq!(rightmost_address("203.0.113.9, 192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(rightmost_address("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(rightmost_address("192.0.2.1, junk"), None);
    }
}
