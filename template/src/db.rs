//! The database: one pool (`[databases.eventstream]` in Rocket.toml) for the
//! application's tables and eventstream-rocket's event log, and the
//! application's own migrations.

use rocket::fairing::{self, AdHoc};
use rocket::{Build, Rocket};
use rocket_db_pools::{Database, sqlx};

/// The application's database.
#[derive(Database)]
#[database("eventstream")]
{%- if database == "postgres" %}
pub struct Db(sqlx::PgPool);
{%- else %}
pub struct Db(sqlx::SqlitePool);
{%- endif %}

/// The database type, for `Events::begin::<DbType>()`: a transaction on
/// this database that also carries events.
{%- if database == "postgres" %}
pub type DbType = sqlx::Postgres;
{%- else %}
pub type DbType = sqlx::Sqlite;
{%- endif %}

/// Runs the migrations in `migrations/` at launch.
async fn run_migrations(rocket: Rocket<Build>) -> fairing::Result {
    let Some(db) = Db::fetch(&rocket) else {
        return Err(rocket);
    };
{%- if database == "postgres" %}
    let mut migrator = sqlx::migrate!("migrations/postgres");
{%- else %}
    let mut migrator = sqlx::migrate!("migrations/sqlite");
{%- endif %}
    // eventstream-rocket records its own migrations in the same
    // `_sqlx_migrations` table (in a reserved version range): tolerate them.
    migrator.set_ignore_missing(true);
    match migrator.run(&**db).await {
        Ok(()) => Ok(rocket),
        Err(e) => {
            error!("Failed to run database migrations: {e}");
            Err(rocket)
        }
    }
}

/// Migrations; attach after `Db::init()`.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Database migrations", run_migrations)
}
