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

use rocket::fairing::AdHoc;
use rocket::fs::FileServer;
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
        .attach(static_files())
}

/// Serves `static_dir` (Rocket.toml; `static` by default) at `/static`,
/// relative to the working directory as `template_dir` is: the binary runs
/// wherever it is deployed, next to its `static/` and `templates/`.
fn static_files() -> AdHoc {
    AdHoc::try_on_ignite("static files", |rocket| async move {
        let dir: String = rocket
            .figment()
            .extract_inner("static_dir")
            .unwrap_or_else(|_| "static".to_owned());
        if !std::path::Path::new(&dir).is_dir() {
            let here = std::env::current_dir().unwrap_or_default();
            error!(
                "static_dir {dir:?} is not a directory (relative to {}): deploy the static/ \
                 directory next to the binary, or set static_dir in Rocket.toml",
                here.display()
            );
            return Err(rocket);
        }
        Ok(rocket.mount("/static", FileServer::from(dir)))
    })
}

#[launch]
fn rocket() -> _ {
    app(rocket::Config::figment())
}
