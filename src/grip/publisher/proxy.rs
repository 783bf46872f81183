//! One proxy over HTTP: where to publish, how to authenticate, and why a
//! request failed (in words for the health check, never the proxy's body).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::config::{GripProxyConfig, PublishAuth, redact_url};

/// Lifetime of a publish JWT.
const PUBLISH_TOKEN_SECS: u64 = 600;

/// Why a request to a proxy failed.
#[derive(Debug)]
pub(super) enum PublishError {
    /// The proxy answered with this status.
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
    /// No answer: connection refused, timeout, TLS.
    Transport(reqwest::Error),
}

impl PublishError {
    /// What the health check shows: the status, or which way no answer
    /// came; never the proxy's body or the URL.
    pub(super) fn summary(&self) -> String {
        match self {
            PublishError::Status { status, .. } => format!("the proxy answered {status}"),
            PublishError::Transport(error) if error.is_connect() => {
                "no connection to the proxy".into()
            }
            PublishError::Transport(error) if error.is_timeout() => {
                "no answer from the proxy in time".into()
            }
            PublishError::Transport(_) => "the request to the proxy failed".into(),
        }
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Status { status, body } => write!(f, "{status}: {body}"),
            PublishError::Transport(error) => write!(f, "{error}"),
        }
    }
}

/// Where and how to publish to one proxy.
pub(super) struct Target {
    pub(super) publish_url: String,
    pub(super) recover_url: String,
    /// The control URI for log lines: without credentials or query.
    pub(super) label: String,
    pub(super) auth: PublishAuth,
    pub(super) client: reqwest::Client,
}

impl Target {
    pub(super) fn new(proxy: &GripProxyConfig, client: reqwest::Client) -> Target {
        Target {
            publish_url: format!("{}/publish/", proxy.control_uri),
            recover_url: format!("{}/recover", proxy.control_uri),
            label: redact_url(&proxy.control_uri),
            auth: proxy.publish_auth.clone(),
            client,
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            PublishAuth::None => request,
            PublishAuth::Bearer(token) => request.bearer_auth(token.expose()),
            PublishAuth::Jwt { iss, key } => {
                let claims = json!({ "iss": iss, "exp": jsonwebtoken::get_current_timestamp() + PUBLISH_TOKEN_SECS });
                match jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &claims,
                    &EncodingKey::from_secret(key),
                ) {
                    Ok(token) => request.bearer_auth(token),
                    Err(e) => {
                        log::error!("eventstream: cannot sign a publish token: {e}");
                        request
                    }
                }
            }
        }
    }

    /// `POST /recover`: every held stream re-fetches its next link.
    pub(super) async fn recover(&self) -> Result<(), PublishError> {
        match self.post(&self.recover_url, String::new()).await {
            // Proxies without `/recover` (Fastly) have nothing to do.
            Err(PublishError::Status { status, .. })
                if status == reqwest::StatusCode::NOT_FOUND =>
            {
                Ok(())
            }
            other => other,
        }
    }

    pub(super) async fn post(&self, url: &str, body: String) -> Result<(), PublishError> {
        let request = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            // Pushpin answers 411 to a bodiless POST without it.
            .header("Content-Length", body.len().to_string())
            .body(body);
        let response = self
            .authorize(request)
            .send()
            .await
            // reqwest's errors name the URL, which may carry credentials.
            .map_err(|e| PublishError::Transport(e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let body = response.text().await.unwrap_or_default().trim().to_owned();
            Err(PublishError::Status { status, body })
        }
    }
}

/// How long to wait before attempt `attempt + 1`.
pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(6))
}
