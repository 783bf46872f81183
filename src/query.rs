//! What a request says about itself: its query parameters and its bearer
//! credentials. Streams, the identity, GRIP and the publish API all read
//! requests through these two functions, so they agree on every corner case
//! (repeated parameters, the scheme's case, surrounding spaces).

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
}
