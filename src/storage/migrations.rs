//! The library's own schema migrations, embedded in the binary.
//!
//! They share sqlx's `_sqlx_migrations` table with the application's
//! migrator, so they use a reserved version range that no application
//! migration (sequential numbers or `YYYYMMDDHHMMSS` timestamps) reaches,
//! and run with `ignore_missing`: each migrator then ignores the other's
//! rows. An application migrator must also set `ignore_missing` (see the
//! README).

use std::borrow::Cow;

use rocket_db_pools::sqlx::{
    self,
    migrate::{Migration, MigrationType, Migrator},
};

use super::handle::Storage;

/// First version of the reserved range: versions
/// `1_000_000_000_000_001 ..= 1_000_000_000_000_999` belong to this library.
pub const MIGRATION_VERSION_BASE: i64 = 1_000_000_000_000_000;

/// (version offset, description, SQLite SQL, PostgreSQL SQL)
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "eventstream event log",
        include_str!("../../migrations/sqlite/0001_event_log.sql"),
        include_str!("../../migrations/postgres/0001_event_log.sql"),
    ),
    (
        2,
        "eventstream append tokens",
        include_str!("../../migrations/sqlite/0002_append_tokens.sql"),
        include_str!("../../migrations/postgres/0002_append_tokens.sql"),
    ),
    (
        3,
        "eventstream log identity",
        include_str!("../../migrations/sqlite/0003_log_identity.sql"),
        include_str!("../../migrations/postgres/0003_log_identity.sql"),
    ),
];

fn migrator(postgres: bool) -> Migrator {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(offset, description, sqlite, postgres_sql)| {
            let sql = if postgres { postgres_sql } else { sqlite };
            Migration::new(
                MIGRATION_VERSION_BASE + offset,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: true,
        locking: true,
    }
}

/// Brings the schema up to date. SQLite databases are also switched to WAL
/// so that streams can read while the writer commits.
pub(crate) async fn migrate(storage: &Storage) -> Result<(), sqlx::migrate::MigrateError> {
    match storage {
        Storage::Sqlite(pool) => {
            // In-memory databases answer "memory" and keep working.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(pool)
                .await?;
            migrator(false).run(pool).await
        }
        Storage::Postgres(pool) => migrator(true).run(pool).await,
    }
}
