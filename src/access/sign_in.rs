//! Identities for a browser on the app's own origin: the app's private
//! sign-in cookie, or a request guard the app already has. A same-origin
//! `EventSource` sends the app's cookies, so neither puts a token in the
//! URL (where access logs keep it) or needs a polyfill for a header. The
//! cookie needs the `cookies` cargo feature.

use std::marker::PhantomData;

use rocket::Request;
#[cfg(feature = "cookies")]
use rocket::http::{Cookie, CookieJar, SameSite};
use rocket::request::{FromRequest, Outcome};
#[cfg(feature = "cookies")]
use serde::{Deserialize, Serialize};

use crate::access::identity::{Identify, User};
use crate::error::StreamError;

/// The user a sign-in cookie carries.
#[cfg(feature = "cookies")]
#[derive(Serialize, Deserialize)]
struct Signed {
    id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
}

/// Identifies a request by a private cookie the app set when the user
/// signed in: encrypted and authenticated with Rocket's `secret_key`, so
/// only the app can have written it. Set `identity_cookie` in the
/// configuration to have the stage use it (when a request carries no
/// token), and sign in with [`Events::sign_in`](crate::Events::sign_in).
/// Needs the `cookies` cargo feature (Rocket's private cookies).
#[cfg(feature = "cookies")]
#[derive(Debug, Clone)]
pub struct CookieIdentity {
    name: String,
}

#[cfg(feature = "cookies")]
impl CookieIdentity {
    /// Reads the private cookie `name`.
    pub fn named(name: impl Into<String>) -> Self {
        CookieIdentity { name: name.into() }
    }

    /// Signs `user` in, roles included, until the browser session ends: a
    /// private cookie, `HttpOnly`, `SameSite=Lax`, for the whole site.
    pub fn sign_in(&self, cookies: &CookieJar<'_>, user: &User) {
        let signed = Signed {
            id: user.id.clone(),
            roles: user.roles().to_vec(),
        };
        let value = serde_json::to_string(&signed).unwrap_or_default();
        cookies.add_private(
            Cookie::build((self.name.clone(), value))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax),
        );
    }

    /// Signs the user out.
    pub fn sign_out(&self, cookies: &CookieJar<'_>) {
        cookies.remove_private(Cookie::build(self.name.clone()).path("/"));
    }
}

#[cfg(feature = "cookies")]
#[rocket::async_trait]
impl Identify for CookieIdentity {
    /// The cookie's user, or anonymous without one. A cookie that does not
    /// decrypt (another `secret_key`, or forged) is no cookie.
    async fn identify(&self, request: &Request<'_>) -> Result<Option<User>, StreamError> {
        let Some(cookie) = request.cookies().get_private(&self.name) else {
            return Ok(None);
        };
        match serde_json::from_str::<Signed>(cookie.value()) {
            Ok(signed) if !signed.id.is_empty() => {
                Ok(Some(User::new(signed.id).with_roles(signed.roles)))
            }
            _ => Err(StreamError::unauthenticated(
                "the sign-in cookie is not one this app writes: sign in again",
            )),
        }
    }
}

/// Identifies a request with a request guard the app already has (its own
/// session, its own user type): `Stage::identity(GuardIdentity::<CurrentUser>::new())`.
/// The guard's success is the user, a forward is anonymous, and its
/// failure refuses the stream.
pub struct GuardIdentity<G> {
    guard: PhantomData<fn() -> G>,
}

impl<G> GuardIdentity<G> {
    /// Uses the guard `G`.
    pub fn new() -> Self {
        GuardIdentity { guard: PhantomData }
    }
}

impl<G> Default for GuardIdentity<G> {
    fn default() -> Self {
        GuardIdentity::new()
    }
}

impl<G> std::fmt::Debug for GuardIdentity<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardIdentity")
            .field("guard", &std::any::type_name::<G>())
            .finish()
    }
}

#[rocket::async_trait]
impl<G> Identify for GuardIdentity<G>
where
    G: for<'r> FromRequest<'r> + Into<User> + Send + 'static,
{
    async fn identify(&self, request: &Request<'_>) -> Result<Option<User>, StreamError> {
        match request.guard::<G>().await {
            Outcome::Success(guard) => Ok(Some(guard.into())),
            Outcome::Forward(_) => Ok(None),
            Outcome::Error((status, _)) => Err(StreamError::unauthenticated(format!(
                "sign-in refused ({status})"
            ))),
        }
    }
}

/// Asks `A`, then `B` when `A` finds no user: say a token (other origins,
/// native clients), then the app's sign-in cookie (its own pages). A
/// refusal by either refuses the request.
#[derive(Debug, Clone)]
pub struct FirstOf<A, B>(pub A, pub B);

#[rocket::async_trait]
impl<A: Identify, B: Identify> Identify for FirstOf<A, B> {
    async fn identify(&self, request: &Request<'_>) -> Result<Option<User>, StreamError> {
        match self.0.identify(request).await? {
            Some(user) => Ok(Some(user)),
            None => self.1.identify(request).await,
        }
    }
}
