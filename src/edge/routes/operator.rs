//! The routes for operators, each at the path its setting names (outside
//! `mount`): the health check (`health_path`) and the Prometheus scrape
//! (`metrics_path`). Their paths are chosen at launch, so they are
//! handlers rather than `#[get]` routes.

use rocket::http::{ContentType, Method, Status};
use rocket::route::{Handler, Outcome};
use rocket::{Data, Request, Response, Route};

use crate::config::Config;
use crate::edge::health::Health;
use crate::edge::prometheus;
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

/// The operator routes the configuration turns on, to mount at `/`.
pub(crate) fn routes(config: &Config) -> Vec<Route> {
    let mut routes = Vec::new();
    if let Some(path) = &config.health_path {
        routes.push(Route::new(Method::Get, path, HealthCheck));
    }
    if let Some(path) = &config.metrics_path {
        routes.push(Route::new(Method::Get, path, Scrape));
    }
    routes
}
