//! Identity: who is behind a request. The built-in [`JwtIdentity`] reads an
//! HS256 JWT; apps with sessions or other tokens implement [`Identify`].

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use rocket::Request;
use serde::Deserialize;

use crate::access::request_info::{bearer, query_values};
use crate::error::{Error, StreamError};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// A stable id: compared with `skip_user_ids` and used to find the
    /// streams `channel_permission_changed` ends.
    pub id: String,
    roles: Vec<String>,
}

impl User {
    /// A user with this id (and no roles).
    pub fn new(id: impl Into<String>) -> Self {
        User {
            id: id.into(),
            roles: Vec::new(),
        }
    }

    /// The user with these roles: what an authorizer can check without
    /// looking the user up again. A token's `roles` claim and a sign-in
    /// cookie carry them.
    pub fn with_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The user's roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether the user has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

/// Decides who a request comes from.
#[rocket::async_trait]
pub trait Identify: Send + Sync + 'static {
    /// `Ok(None)` is anonymous. Credentials that are present but invalid
    /// must be an error (`forbidden`), never anonymous.
    async fn identify(&self, request: &Request<'_>) -> Result<Option<User>, StreamError>;
}

/// The built-in identity: an HS256 JWT signed with `eventstream.jwt_secret`,
/// whose `sub` is the user id and whose `exp` is required; `nbf` is checked
/// when present, and `iss` / `aud` are required and checked when pinned
/// (`eventstream.jwt_issuer`, `eventstream.jwt_audience`).
///
/// The token is read from `Authorization: Bearer <jwt>` or, because
/// `EventSource` cannot set headers, from a `token` query parameter. Query
/// strings end up in access logs (Rocket logs them at its `normal` level),
/// so keep such tokens short-lived.
pub struct JwtIdentity {
    key: Option<DecodingKey>,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Optional: the user's roles.
    #[serde(default)]
    roles: Vec<String>,
}

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

impl JwtIdentity {
    /// Verifies tokens with `secret`; without one, any token is refused.
    pub fn new(secret: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECS;
        // A token that is not valid yet is refused like an expired one.
        validation.validate_nbf = true;
        JwtIdentity {
            key: secret.map(|secret| DecodingKey::from_secret(secret.as_bytes())),
            validation,
        }
    }

    /// Accepts only tokens whose `iss` is `issuer` (and requires `iss`).
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.require("iss");
        self
    }

    /// Accepts only tokens whose `aud` includes `audience` (and requires
    /// `aud`).
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.require("aud");
        self
    }

    fn require(&mut self, claim: &str) {
        let mut required: Vec<String> = self
            .validation
            .required_spec_claims
            .iter()
            .cloned()
            .collect();
        required.push(claim.to_owned());
        self.validation.set_required_spec_claims(&required);
    }

    /// Checks a token and returns its user.
    pub fn verify(&self, token: &str) -> Result<User, StreamError> {
        let Some(key) = &self.key else {
            return Err(StreamError::unauthenticated(
                "a token was given but the server has no jwt_secret to check it",
            ));
        };
        match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
            Ok(data) if !data.claims.sub.is_empty() => {
                Ok(User::new(data.claims.sub).with_roles(data.claims.roles))
            }
            Ok(_) => Err(StreamError::unauthenticated("invalid token: empty sub")),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                Err(StreamError::credentials_expired("token expired"))
            }
            Err(e) if matches!(e.kind(), ErrorKind::ImmatureSignature) => {
                Err(StreamError::unauthenticated("token not valid yet (nbf)"))
            }
            Err(e) => Err(StreamError::unauthenticated(format!("invalid token: {e}"))),
        }
    }
}

impl std::fmt::Debug for JwtIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIdentity")
            .field("configured", &self.key.is_some())
            .finish()
    }
}

/// What a token is signed for, besides its user: the pinned issuer and
/// audience, if any.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pins<'a> {
    pub(crate) issuer: Option<&'a str>,
    pub(crate) audience: Option<&'a str>,
}

/// Signs an HS256 JWT with `sub` = `user_id`, `exp` = now + `valid_for`,
/// and the pinned `iss` / `aud`.
pub(crate) fn sign(
    secret: &str,
    user_id: &str,
    valid_for: std::time::Duration,
    pins: Pins<'_>,
) -> Result<String, Error> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        iss: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        aud: Option<&'a str>,
    }
    if user_id.is_empty() {
        return Err(Error::Token("the user id is empty".into()));
    }
    let exp = jsonwebtoken::get_current_timestamp().saturating_add(valid_for.as_secs());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &Claims {
            sub: user_id,
            exp,
            iss: pins.issuer,
            aud: pins.audience,
        },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::Token(e.to_string()))
}

#[rocket::async_trait]
impl Identify for JwtIdentity {
    /// The token comes from `Authorization: Bearer`, which wins, or else
    /// from the last non-empty `token` query value. An `Authorization`
    /// header that is not a bearer token is refused, never anonymous.
    async fn identify(&self, request: &Request<'_>) -> Result<Option<User>, StreamError> {
        let token = match request.headers().get_one("Authorization") {
            Some(header) => Some(bearer(header).ok_or_else(|| {
                StreamError::unauthenticated("the Authorization header must be \"Bearer <token>\"")
            })?),
            None => query_values(request, "token")
                .into_iter()
                .rfind(|value| !value.is_empty()),
        };
        match token {
            Some(token) => self.verify(token).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_expire() {
        let secret = "0123456789abcdef0123456789abcdef";
        let identity = JwtIdentity::new(Some(secret));
        let token = sign(
            secret,
            "ann",
            std::time::Duration::from_secs(60),
            Pins::default(),
        )
        .expect("signed");
        assert_eq!(identity.verify(&token), Ok(User::new("ann")));
        let other = JwtIdentity::new(Some("another-secret-0123456789abcdef"));
        assert!(other.verify(&token).is_err());
        assert!(JwtIdentity::new(None).verify(&token).is_err());
    }

    #[test]
    fn a_roles_claim_gives_the_user_roles() {
        let secret = "0123456789abcdef0123456789abcdef";
        let claims = serde_json::json!({
            "sub": "ann",
            "roles": ["staff", "admin"],
            "exp": jsonwebtoken::get_current_timestamp() + 60,
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("signed");
        let user = JwtIdentity::new(Some(secret))
            .verify(&token)
            .expect("valid");
        assert_eq!(user.roles(), ["staff", "admin"]);
        assert!(user.has_role("staff") && !user.has_role("guest"));
        assert_eq!(user, User::new("ann").with_roles(["staff", "admin"]));
    }

    #[test]
    fn pinned_issuer_and_audience_are_required_and_signed() {
        let secret = "0123456789abcdef0123456789abcdef";
        let pins = Pins {
            issuer: Some("https://auth.example"),
            audience: Some("events"),
        };
        let identity = JwtIdentity::new(Some(secret))
            .issuer("https://auth.example")
            .audience("events");
        let valid = std::time::Duration::from_secs(60);
        let pinned = sign(secret, "ann", valid, pins).expect("signed");
        assert_eq!(identity.verify(&pinned), Ok(User::new("ann")));
        let bare = sign(secret, "ann", valid, Pins::default()).expect("signed");
        assert!(identity.verify(&bare).is_err(), "iss and aud are required");
        let other = Pins {
            audience: Some("another-service"),
            ..pins
        };
        let elsewhere = sign(secret, "ann", valid, other).expect("signed");
        assert!(identity.verify(&elsewhere).is_err(), "wrong audience");
    }
}
