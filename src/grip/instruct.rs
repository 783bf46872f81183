//! The answer to a proxied stream request: a finite body (stream-open, any
//! reset, one page of backlog) and the `Grip-*` headers that make the proxy
//! hold the connection:
//!
//! ```text
//! Grip-Hold: stream                                  (always, also while backlog pages remain)
//! Grip-Channel: events-a; prev-id=3; filter=build-id; filter=skip-users, events-live; filter=skip-users,
//!               user-u-ann; filter=require-sub
//! Grip-Set-Meta: id_format="a:%(events-a)s", user="u-ann"
//! Grip-Keep-Alive: event: keep-alive\ndata:\n\n; format=cstring; timeout=20
//! Grip-Link: </events/?link=next&recover=true&es-meta=...>; rel=next; timeout=120 (1 with backlog)
//! ```
//!
//! The proxy runs the `build-id` filter over this body too, so every `%` in
//! it is doubled (django-eventstream left the id lines unescaped).

use bytes::{Bytes, BytesMut};
use rocket::Request;

use crate::authorizer;
use crate::channel;
use crate::context::Context;
use crate::error::StreamError;
use crate::event_id::{IdVector, Resume};
use crate::identity::User;
use crate::query::query_values;
use crate::replay::{self, Reader};
use crate::session::{Refusal, max_chunk_bytes};

use super::link::next_link;
use super::publisher::escape_percent;
use super::{Grip, events_channel, user_key};

/// What a proxied request carries besides the stream parameters.
#[derive(Debug, Clone)]
pub(crate) struct GripRequest {
    /// The request path, for the next link.
    path: String,
    /// `es-meta`, on next-link requests.
    link_token: Option<String>,
    /// Where a next link continues from: the `Grip-Last` positions, never
    /// a client header.
    last: IdVector,
}

impl GripRequest {
    /// `Some` when the request's `Grip-Sig` verifies against a configured
    /// proxy; otherwise the request is served directly.
    pub(crate) fn from_request(grip: &Grip, request: &Request<'_>) -> Option<GripRequest> {
        if !grip
            .verifier
            .verifies(request.headers().get_one("Grip-Sig"))
        {
            return None;
        }
        let query = |name: &str| {
            query_values(request, name)
                .last()
                .map(|value| (*value).to_owned())
        };
        let is_next = query("link").as_deref() == Some("next");
        let mut last = IdVector::new();
        for value in request.headers().get("Grip-Last") {
            for entry in value.split(',') {
                let mut parts = entry.split(';').map(str::trim);
                let Some(name) = parts.next().and_then(|name| name.strip_prefix("events-")) else {
                    continue;
                };
                let Some(channel) = channel::unquote(name) else {
                    continue;
                };
                let seq = parts
                    .find_map(|part| part.strip_prefix("last-id="))
                    .and_then(|id| id.parse().ok());
                if let Some(seq) = seq {
                    last.set(channel, seq);
                }
            }
        }
        Some(GripRequest {
            path: request.uri().path().to_string(),
            link_token: if is_next { query("es-meta") } else { None },
            last,
        })
    }
}

/// A finished proxied response: the `Grip-*` headers and the body.
#[derive(Debug, Default)]
pub(crate) struct Proxied {
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
}

impl Proxied {
    /// No GRIP headers: the proxy relays the answer (a `stream-error`, or
    /// `retry:` for a deferral) and ends the response.
    fn refused(refusal: Refusal, context: &Context) -> Proxied {
        Proxied {
            headers: Vec::new(),
            body: refusal.into_frame(&context.metrics),
        }
    }
}

/// Builds the response for a proxied request.
pub(crate) async fn respond(
    context: &Context,
    grip: &Grip,
    request: &GripRequest,
    channels: Result<Vec<String>, StreamError>,
    user: Result<Option<User>, StreamError>,
    resume: Result<Resume, String>,
) -> Proxied {
    // A next link names the stream's channels and user in its token;
    // anything else is a first request, resolved like a direct one.
    let (channels, user, requested, is_next) = match &request.link_token {
        Some(token) => match grip.linker.verify(token) {
            Ok(claims) => (
                claims.channels,
                claims.user.map(User::new),
                request.last.clone(),
                true,
            ),
            Err(why) => {
                // An expired or foreign link: end the stream without an
                // error, so the client reconnects with its Last-Event-ID.
                log::info!("eventstream: next link refused ({why}); ending the proxied stream");
                return Proxied::default();
            }
        },
        None => {
            let resolved = channels.and_then(|channels| {
                let user = user?;
                let requested = resume.map_err(StreamError::bad_request)?.into_positions();
                Ok((channels, user, requested))
            });
            match resolved {
                Ok((channels, user, requested)) => (channels, user, requested, false),
                Err(error) => return Proxied::refused(Refusal::Error(error), context),
            }
        }
    };
    match build(
        context,
        grip,
        request,
        &channels,
        user.as_ref(),
        &requested,
        is_next,
    )
    .await
    {
        Ok(proxied) => proxied,
        Err(refusal) => Proxied::refused(refusal, context),
    }
}

async fn build(
    context: &Context,
    grip: &Grip,
    request: &GripRequest,
    channels: &[String],
    user: Option<&User>,
    requested: &IdVector,
    is_next: bool,
) -> Result<Proxied, Refusal> {
    let config = &context.config;
    let reliable = authorizer::authorize(context.authorizer.as_ref(), user, channels).await?;
    replay::check_id_vector(channels, &reliable, config.max_id_vector_bytes)?;
    let user_id = user.map(|user| user.id.as_str());
    let reader = Reader {
        storage: &context.storage,
        metrics: &context.metrics,
        user_id,
        single: channels.len() == 1,
    };
    let start = reader.start(channels, &reliable, requested).await?;
    let mut body = BytesMut::new();
    if is_next {
        start.write_reset(&mut body);
    } else {
        start.write_opening(&mut body, config.padding);
    }

    // One page of backlog across the channels (at most `replay_page`
    // events and a chunk's bytes); the rest by next link.
    let mut positions = start.positions;
    let mut budget = config.replay_page;
    let max_bytes = max_chunk_bytes(config.chunk_size);
    let mut more = false;
    'channels: for (index, channel) in channels.iter().enumerate() {
        if start.behind & (1 << index) == 0 {
            continue;
        }
        loop {
            let bytes_left = max_bytes.saturating_sub(body.len());
            if budget == 0 || bytes_left == 0 {
                more = true;
                break 'channels;
            }
            let page = reader
                .page(&mut body, channel, &mut positions, budget, bytes_left, None)
                .await?;
            budget -= page.events;
            if page.complete {
                break;
            }
        }
    }

    let token = grip.linker.sign(channels, user_id).map_err(|why| {
        log::error!("eventstream: cannot sign a next link: {why}");
        StreamError::internal("cannot sign the next link")
    })?;
    // The proxy runs the build-id filter over this body too: escape `%`.
    let build_id = reliable.iter().any(|reliable| *reliable);
    let body = if build_id {
        Bytes::from(escape_percent(&body))
    } else {
        body.freeze()
    };
    let key = user_key(user_id);
    let mut subscriptions: Vec<String> = channels
        .iter()
        .zip(&reliable)
        .map(
            |(channel, reliable)| match positions.get(channel).filter(|_| *reliable) {
                Some(position) => format!(
                    "{}; prev-id={position}; filter=build-id; filter=skip-users",
                    events_channel(channel)
                ),
                None => format!("{}; filter=skip-users", events_channel(channel)),
            },
        )
        .collect();
    subscriptions.push(format!("user-{key}; filter=require-sub"));

    let mut meta = Vec::new();
    if !positions.is_empty() {
        let format: Vec<String> = positions
            .iter()
            .map(|(channel, _)| {
                let quoted = channel::quote(channel);
                format!("{}:%(events-{quoted})s", quoted.replace('%', "%%"))
            })
            .collect();
        meta.push(format!("id_format=\"{}\"", format.join(",")));
    }
    meta.push(format!("user=\"{key}\""));

    // Always hold, with `prev-id` at the last event written. With more
    // backlog pending, the link times out at once, so the proxy comes back
    // for the next page within a second (or sooner, when a live item shows
    // it is behind). Pushpin 1.36 mixes up concurrent next-link responses
    // that carry no hold, so the unheld paging django-eventstream uses
    // loses and repeats events there; holding every page does not.
    let params = [
        ("link", "next"),
        ("recover", "true"),
        ("es-meta", token.as_str()),
    ];
    let link = next_link(&config.grip_path_prefix, &request.path, &params);
    let link_timeout = if more {
        1
    } else {
        config.grip_link_timeout_secs
    };
    let mut headers = vec![("Grip-Hold", "stream".to_owned())];
    headers.push(("Grip-Channel", subscriptions.join(", ")));
    headers.push(("Grip-Set-Meta", meta.join(", ")));
    headers.push((
        "Grip-Keep-Alive",
        format!(
            "event: keep-alive\\ndata:\\n\\n; format=cstring; timeout={}",
            config.keepalive_secs
        ),
    ));
    headers.push((
        "Grip-Link",
        format!("<{link}>; rel=next; timeout={link_timeout}"),
    ));
    Ok(Proxied { headers, body })
}
