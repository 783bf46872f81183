//! The routes for operators, each at the path its setting names (outside
//! `mount`): the health check (`health_path`), the Prometheus scrape
//! (`metrics_path`) and the delivery trace (`explain_path`, behind a key).
//! Their paths are chosen at launch, so they are handlers rather than
//! `#[get]` routes.
//!
//! ```text
//! GET <explain_path>?channel=room[&user=ann][&last_event_id=room:41]
//! Authorization: Bearer <explain_key, or publish_key>
//!
//! 200 {"channel":"room","persistent":true,"storage":{"last_id":57,"trimmed_through":45},
//!      "resume":{"position":41,"outcome":"stream-reset","why":"…"},"access":{…},…}
//! 400 {"error":"bad-request","text":…}   no or a bad channel
//! 401 (WWW-Authenticate: Bearer), 403    no key, a wrong key
//! ```

use rocket::http::{ContentType, Method, Status};
use rocket::route::{Handler, Outcome};
use rocket::{Data, Request, Response, Route};

use crate::access::identity::User;
use crate::access::request_info::query_values;
use crate::config::{Config, Secret};
use crate::edge::health::Health;
use crate::edge::prometheus;
use crate::edge::routes::publish_api::{ApiResponse, check_key};
use crate::error::ApiCondition;
use crate::events::Events;

#[derive(Clone)]
struct HealthCheck;

#[rocket::async_trait]
impl Handler for HealthCheck {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let Some(health) = request.rocket().state::<Health>() else {
            return Outcome::Forward((data, Status::NotFound));
        };
        let (status, body) = health.check().await;
        Outcome::from(request, (status, (ContentType::JSON, body.to_string())))
    }
}

#[derive(Clone)]
struct Scrape;

#[rocket::async_trait]
impl Handler for Scrape {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let Some(events) = request.rocket().state::<Events>() else {
            return Outcome::Forward((data, Status::NotFound));
        };
        let text = prometheus::render(&events.metrics(), &events.context().metrics);
        let response = Response::build()
            .raw_header("Content-Type", prometheus::CONTENT_TYPE)
            .sized_body(text.len(), std::io::Cursor::new(text))
            .finalize();
        Outcome::Success(response)
    }
}

#[derive(Clone)]
struct Explain;

#[rocket::async_trait]
impl Handler for Explain {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let Some(events) = request.rocket().state::<Events>() else {
            return Outcome::Forward((data, Status::NotFound));
        };
        let answer = explain(request, events).await;
        Outcome::from(request, answer)
    }
}

/// The delivery trace's answer to `request`.
async fn explain(request: &Request<'_>, events: &Events) -> ApiResponse {
    let config = &events.context().config;
    let key = config
        .explain_key
        .as_ref()
        .or(config.publish_key.as_ref())
        .map_or("", Secret::expose);
    if let Err(refusal) = check_key(request.headers().get_one("Authorization"), key, events) {
        return refusal;
    }
    let one = |name: &str| {
        query_values(request, name)
            .last()
            .map(|value| (*value).to_owned())
    };
    let Some(channel) = one("channel") else {
        return ApiResponse::error(
            events,
            ApiCondition::BadRequest,
            "name the channel: ?channel=<name>",
        );
    };
    let user = one("user").map(User::new);
    let last_event_id = one("last_event_id");
    match events
        .explain(&channel, user.as_ref(), last_event_id.as_deref())
        .await
    {
        Ok(explanation) => ApiResponse::new(
            events,
            Status::Ok,
            serde_json::to_value(explanation).unwrap_or_default(),
        ),
        Err(error) => ApiResponse::failed(events, &channel, &error),
    }
}

/// The operator routes the configuration turns on, to mount at `/`.
pub(crate) fn routes(config: &Config) -> Vec<Route> {
    let mut routes = Vec::new();
    if let Some(path) = &config.health_path {
        routes.push(Route::new(Method::Get, path, HealthCheck));
    }
    if let Some(path) = &config.metrics_path {
        routes.push(Route::new(Method::Get, path, Scrape));
    }
    if let Some(path) = &config.explain_path {
        routes.push(Route::new(Method::Get, path, Explain));
    }
    routes
}
