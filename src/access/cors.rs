//! CORS for the stream and the publish API: the request's `Origin` is
//! matched against `allow_origins`, and preflight `OPTIONS` requests are
//! answered by the stage's own routes.

use rocket::http::Header;
use rocket::{Request, Response};

use crate::config::{AllowedOrigins, Config};

/// Methods a cross-origin caller may use on the mount.
const ALLOWED_METHODS: &str = "GET, POST, OPTIONS";

/// How long browsers may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "86400";

/// Adds the CORS headers `config` calls for to `response`.
pub(crate) fn apply(
    config: &Config,
    request: &Request<'_>,
    response: &mut Response<'_>,
    preflight: bool,
) {
    let allowed = match &config.allow_origins {
        AllowedOrigins::None => return,
        AllowedOrigins::Any => "*".to_owned(),
        AllowedOrigins::List(origins) => {
            // The answer depends on the Origin header: caches must know.
            response.set_header(Header::new("Vary", "Origin"));
            let Some(origin) = request.headers().get_one("Origin") else {
                return;
            };
            let origin = origin.trim().trim_end_matches('/');
            match origins
                .iter()
                .find(|allowed| allowed.eq_ignore_ascii_case(origin))
            {
                Some(_) => origin.to_owned(),
                None => return,
            }
        }
    };
    response.set_header(Header::new("Access-Control-Allow-Origin", allowed));
    if config.allow_credentials {
        response.set_header(Header::new("Access-Control-Allow-Credentials", "true"));
    }
    if !config.allow_headers.0.is_empty() {
        response.set_header(Header::new(
            "Access-Control-Allow-Headers",
            config.allow_headers.0.join(", "),
        ));
    }
    if preflight {
        response.set_header(Header::new("Access-Control-Allow-Methods", ALLOWED_METHODS));
        response.set_header(Header::new("Access-Control-Max-Age", PREFLIGHT_MAX_AGE));
    }
}
