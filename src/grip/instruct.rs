//! The answer to a proxied stream request: a finite body (stream-open, any
//! reset, one page of backlog) and the `Grip-*` headers that make the proxy
//! hold the connection:
//!
//! ```text
//! Grip-Hold: stream                                  (always, also while backlog pages remain)
//! Grip-Channel: events-a; prev-id=3; filter=build-id; filter=skip-users, events-live; filter=skip-users,
//!               user-u-ann; filter=require-sub; filter=build-id
//! Grip-Set-Meta: id_format="a:%(events-a)s", user="u-ann"
//! Grip-Keep-Alive: event: keep-alive\ndata:\n\n; format=cstring; timeout=20
//! Grip-Link: </events/_next/<token>>; rel=next; timeout=120
//! ```
//!
//! A page with more backlog behind it is not held: it carries only
//! `Grip-Link` (its token holds the page's end positions), which the proxy
//! follows at once, without a timeout or its update rate limit. Only the
//! page that catches up holds, with `prev-id` at the stream's position on
//! every persistent channel (`0` for a channel without events yet), so
//! the proxy checks every item it delivers and asks again after any gap.
//!
//! The proxy runs the `build-id` filter over this body too, so every `%` in
//! it is doubled (django-eventstream left the id lines unescaped).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rocket::Request;

use crate::access::authorizer::presence_rules;
use crate::access::identity::User;
use crate::access::request_info::query_values;
use crate::config::{Config, MAX_GRIP_PRESENCE_CHANNELS};
use crate::context::Context;
use crate::error::StreamError;
use crate::stream::replay::{Reader, Unavailable};
use crate::stream::session::{Refusal, max_chunk_bytes};
use crate::wire::channel;
use crate::wire::event_id::{IdVector, Resume, ResumeError};

/// The `id_format` of a proxied stream without persistent channels: never
/// rendered (see [`build`]), only there because `build-id` needs one.
const NO_IDS: &str = "-";

use super::link::{LinkClaims, next_link};
use super::pending::Pending;
use super::{Grip, escape_percent, events_channel, presence_channel, user_key};
use crate::access::presence_rule::PresenceView;
use crate::stream::admit::admit;
use crate::wire::channel_set::ChannelSet;

/// What a proxied request carries besides the stream parameters.
#[derive(Debug, Clone)]
pub(crate) struct GripRequest {
    /// Which configured proxy sent it (the index in `grip_proxies`).
    proxy: usize,
    /// The token of a next link: the `_next` route's segment, or `es-meta`
    /// of a link issued before next links had their own route.
    link_token: Option<String>,
    /// Where a next link continues from: the `Grip-Last` positions, never
    /// a client header.
    last: IdVector,
}

impl GripRequest {
    /// `Some` when the request's `Grip-Sig` verifies against a configured
    /// proxy; otherwise the request is served directly.
    pub(crate) fn from_request(grip: &Grip, request: &Request<'_>) -> Option<GripRequest> {
        let proxy = grip.verifier.proxy(request.headers().get_one("Grip-Sig"))?;
        let query = |name: &str| {
            query_values(request, name)
                .last()
                .map(|value| (*value).to_owned())
        };
        let is_next = query("link").as_deref() == Some("next");
        let last = parse_grip_last(request.headers().get("Grip-Last"));
        Some(GripRequest {
            proxy,
            link_token: if is_next { query("es-meta") } else { None },
            last,
        })
    }

    /// The request follows the next link whose token is `token`.
    pub(crate) fn following(mut self, token: &str) -> GripRequest {
        self.link_token = Some(token.to_owned());
        self
    }
}

/// The positions `Grip-Last` header values give (`events-<quoted channel>;
/// last-id=<seq>`, comma-separated); entries for other channels or
/// unreadable ones are skipped.
pub(crate) fn parse_grip_last<'a>(values: impl Iterator<Item = &'a str>) -> IdVector {
    let mut last = IdVector::new();
    for value in values {
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
    last
}

/// Where a next link continues from, per channel: the link's own positions
/// (a backlog page's end) or the proxy's `Grip-Last` (what a held stream
/// has received since), whichever is further.
fn continue_from(claims: &LinkClaims, last: &IdVector) -> IdVector {
    let mut positions = claims.positions();
    for (channel, seq) in last.iter() {
        if positions.get(channel).is_none_or(|linked| linked < seq) {
            positions.set(channel.to_owned(), seq);
        }
    }
    positions
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
    resume: Result<Resume, ResumeError>,
    presence: bool,
) -> Proxied {
    // A next link names the stream's channels and user in its token;
    // anything else is a first request, resolved like a direct one.
    let (channels, user, requested, is_next, presence) = match &request.link_token {
        Some(token) => match grip.linker.verify(token) {
            Ok(claims) => {
                let from = continue_from(&claims, &request.last);
                let presence = claims.presence;
                (
                    claims.channels,
                    claims.user.map(User::new),
                    from,
                    true,
                    presence,
                )
            }
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
                let requested = resume
                    .map_err(|why| StreamError::bad_request(why.to_string()))?
                    .into_positions();
                Ok((channels, user, requested))
            });
            match resolved {
                Ok((channels, user, requested)) => (channels, user, requested, false, presence),
                Err(error) => return Proxied::refused(Refusal::Error(error), context),
            }
        }
    };
    let asked = Asked {
        channels: &channels,
        user: user.as_ref(),
        requested: &requested,
        is_next,
        presence,
    };
    match build(context, grip, request.proxy, &asked).await {
        Ok(proxied) => proxied,
        Err(refusal) => Proxied::refused(refusal, context),
    }
}

/// What a proxied request asks for, once its link or its headers are read.
struct Asked<'a> {
    channels: &'a [String],
    user: Option<&'a User>,
    /// Where the stream is (first requests: `Last-Event-ID`; next links:
    /// the link and `Grip-Last`).
    requested: &'a IdVector,
    /// A next link rather than a client's first request.
    is_next: bool,
    /// The stream asked for `stream-presence` events.
    presence: bool,
}

/// The answer: the opening (or a reset), a page of backlog, and either a
/// hold or a link to the next page.
async fn build(
    context: &Context,
    grip: &Grip,
    proxy: usize,
    asked: &Asked<'_>,
) -> Result<Proxied, Refusal> {
    let Asked {
        channels,
        user,
        requested,
        is_next,
        presence,
    } = *asked;
    let config = &context.config;
    if presence && channels.len() > MAX_GRIP_PRESENCE_CHANNELS {
        // The proxy would drop subscriptions past its limit, silently.
        return Err(Refusal::Error(StreamError::bad_request(format!(
            "Invalid request: behind a proxy, presence=1 allows at most {MAX_GRIP_PRESENCE_CHANNELS} channels per stream (each takes a second subscription)."
        ))));
    }
    let reliable = admit(context, user, channels).await?;
    // The proxy holds the connection: each of its requests is what
    // presence knows of the stream (see `hold_headers`).
    let rules = presence_rules(context.authorizer.as_ref(), user, channels);
    context.presence.sighted(user, channels, &rules, presence);
    let user_id = user.map(|user| user.id.as_str());
    let reader = Reader::new(context, user, channels.len());
    let mut start = reader.start(channels, &reliable, requested).await?;
    if is_next {
        // A held stream always has a position on every persistent channel
        // (its `prev-id`); one missing from both link and `Grip-Last` could
        // not be resumed: say so rather than skip silently.
        for (channel, _) in channels.iter().zip(&reliable).filter(|(_, r)| **r) {
            if requested.get(channel).is_none() && !start.reset.contains(channel) {
                start.reset.push(channel.clone());
            }
        }
    }
    // Events still on their way to this proxy are left to the publisher:
    // a response that held past them would make their items arrive with
    // the wrong `prev-id` (see `pending`). So a stream that starts "now"
    // starts where this proxy is, and backlog is read only that far.
    let readable_until = where_the_proxy_is(grip.pending.get(proxy), asked, &mut start.positions);
    let mut body = BytesMut::new();
    if is_next {
        start.write_reset(&mut body);
    } else {
        start.write_opening(&mut body, config.padding);
        if presence {
            // Later ones come as items on the presence channels.
            for snapshot in context.presence.snapshots(channels, &rules) {
                body.extend_from_slice(&snapshot);
            }
        }
    }

    // One page of backlog across the channels (at most `replay_page`
    // events and a chunk's bytes); the rest by next link.
    let mut positions = start.positions;
    let page = Page {
        budget: config.replay_page,
        max_bytes: max_chunk_bytes(config.chunk_size),
    };
    let more = page
        .read(
            &reader,
            channels,
            start.behind,
            &readable_until,
            &mut positions,
            &mut body,
        )
        .await?;
    context
        .metrics
        .grip_answered(is_next, !start.behind.is_empty() || !start.reset.is_empty());

    // A page with more behind it names its end in the link; a held stream's
    // link is shared with every stream of the same channels and user.
    let token = grip
        .linker
        .sign(channels, user_id, more.then_some(&positions), presence)
        .map_err(|why| {
            log::error!("eventstream: cannot sign a next link: {why}");
            StreamError::internal("cannot sign the next link")
        })?;
    let link = next_link(&config.grip_path_prefix, &config.mount, &token);
    // The proxy runs the build-id filter over this body too (the user
    // channel always has it): escape `%`.
    let body = Bytes::from(escape_percent(&body));
    if more {
        // Not held: the proxy sends the page and follows the link at once.
        return Ok(Proxied {
            headers: vec![("Grip-Link", format!("<{link}>; rel=next"))],
            body,
        });
    }

    let watched: Vec<PresenceView> = if presence {
        rules.iter().map(|rule| rule.view).collect()
    } else {
        Vec::new()
    };
    let headers = hold_headers(
        config, channels, &reliable, &positions, user_id, &link, &watched,
    );
    Ok(Proxied { headers, body })
}

/// A stream that starts "now" starts where `in_flight` says this proxy is,
/// and its backlog is read only that far: events still on their way to the
/// proxy are left to the publisher, since a response that held past them
/// would make their items arrive with the wrong `prev-id` (see `pending`).
/// Returns how far each channel may be read.
fn where_the_proxy_is(
    in_flight: Option<&Arc<Pending>>,
    asked: &Asked<'_>,
    positions: &mut IdVector,
) -> Vec<Option<u64>> {
    let readable_until: Vec<Option<u64>> = asked
        .channels
        .iter()
        .map(|channel| in_flight.and_then(|pending| pending.readable_until(channel)))
        .collect();
    for (channel, until) in asked.channels.iter().zip(&readable_until) {
        if let (None, Some(until)) = (asked.requested.get(channel), *until)
            && positions
                .get(channel)
                .is_some_and(|position| position > until)
        {
            positions.set(channel.clone(), until);
        }
    }
    readable_until
}

/// How much backlog one answer carries.
struct Page {
    /// Events, at most.
    budget: usize,
    /// Bytes of body, at most.
    max_bytes: usize,
}

impl Page {
    /// Reads the backlog of the channels that are `behind`, each up to
    /// `readable_until`, into `body`; returns whether more is left for the
    /// next page.
    async fn read(
        mut self,
        reader: &Reader<'_>,
        channels: &[String],
        behind: ChannelSet,
        readable_until: &[Option<u64>],
        positions: &mut IdVector,
        body: &mut BytesMut,
    ) -> Result<bool, Unavailable> {
        for (index, channel) in channels.iter().enumerate() {
            if !behind.contains(index) {
                continue;
            }
            let until = readable_until[index];
            loop {
                let position = positions.get(channel).unwrap_or(0);
                if until.is_some_and(|until| position >= until) {
                    break;
                }
                let to_read = until.map_or(self.budget, |until| {
                    self.budget.min(until.saturating_sub(position) as usize)
                });
                let bytes_left = self.max_bytes.saturating_sub(body.len());
                if self.budget == 0 || bytes_left == 0 {
                    return Ok(true);
                }
                let page = reader
                    .page(body, channel, positions, to_read, bytes_left, None)
                    .await?;
                self.budget -= page.events;
                if page.complete {
                    break;
                }
            }
        }
        Ok(false)
    }
}

/// A channel no item is published on (see `hold_headers`).
pub(crate) const LEASE_CHANNEL: &str = "eventstream-lease";

/// The headers of a held stream: its subscriptions (with `prev-id` on
/// persistent channels), the id format and user for the proxy's filters,
/// keep-alives, and the next link with its timeout.
fn hold_headers(
    config: &Config,
    channels: &[String],
    reliable: &[bool],
    positions: &IdVector,
    user_id: Option<&str>,
    link: &str,
    watched: &[PresenceView],
) -> Vec<(&'static str, String)> {
    let key = user_key(user_id);
    let mut subscriptions: Vec<String> = channels
        .iter()
        .zip(reliable)
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
    // `build-id` too: the user channel carries the keep-alive that shows the
    // position of an event withheld from this user (see the publisher).
    subscriptions.push(format!("user-{key}; filter=require-sub; filter=build-id"));
    // Nothing is ever published here. The proxy re-fetches a held
    // stream's next link once `timeout` passes without every one of its
    // channels carrying a message; this one never does, so every proxied
    // stream asks at least once per `grip_link_timeout_secs`, however busy
    // its other channels are: what presence's proxied lease counts on.
    subscriptions.push(LEASE_CHANNEL.to_owned());
    // `presence=1`: each channel's presence events, as this reader may
    // see them (no filter: they carry no id).
    for (channel, view) in channels.iter().zip(watched) {
        match view {
            PresenceView::Hidden => {}
            PresenceView::Counts => subscriptions.push(presence_channel(channel, false)),
            PresenceView::Users => subscriptions.push(presence_channel(channel, true)),
        }
    }

    // Always set: the user channel runs `build-id` on every stream, and the
    // filter refuses to run without it. A stream without persistent
    // channels never gets `%I` to render (withheld-event keep-alives go to
    // streams of stored channels only), so its value there is a
    // placeholder.
    let format: Vec<String> = positions
        .iter()
        .map(|(channel, _)| {
            let quoted = channel::quote(channel);
            format!("{}:%(events-{quoted})s", quoted.replace('%', "%%"))
        })
        .collect();
    let format = if format.is_empty() {
        NO_IDS.to_owned()
    } else {
        format.join(",")
    };
    let mut meta = vec![format!("id_format=\"{format}\"")];
    meta.push(format!("user=\"{key}\""));

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
        format!(
            "<{link}>; rel=next; timeout={}",
            config.grip_link_timeout_secs
        ),
    ));
    headers
}
