//! {{project-name}}: a live chat on Rocket, with server-sent events from
//! eventstream-rocket.
//!
//! `main.rs` only attaches stages; each concern has its own module:
//!
//! | module   | what it does |
//! |----------|--------------|
//! | `db`     | the database pool and the application's migrations |
//! | `events` | the event stream, who may read which room, production secrets check |
//! | `auth`   | demo sign-in, and who a request comes from (`Visitor`) |
//! | `chat`   | posting messages: stored in `messages`, sent as events |
//! | `pages`  | the demo page and room history |
//! | `error`  | the one error shape of the JSON routes: `{"error": "..."}` |

#[macro_use]
extern crate rocket;

mod auth;
mod chat;
mod db;
mod error;
mod events;
mod pages;
#[cfg(test)]
mod tests;

use rocket::fs::{FileServer, relative};
use rocket_db_pools::Database;
use rocket_dyn_templates::Template;

/// The application, configured by `figment` (the tests use their own
/// database).
pub fn app(figment: rocket::figment::Figment) -> rocket::Rocket<rocket::Build> {
    rocket::custom(figment)
        .attach(db::Db::init())
        .attach(db::stage())
        .attach(events::stage())
        .attach(auth::stage())
        .attach(chat::stage())
        .attach(pages::stage())
        .attach(error::stage())
        .attach(Template::fairing())
        .mount("/static", FileServer::from(relative!("static")))
}

#[launch]
fn rocket() -> _ {
    app(rocket::Config::figment())
}
