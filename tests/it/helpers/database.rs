//! A fresh database per test: a temporary SQLite file, or a new database on
//! the PostgreSQL server the harness probed.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Setup;

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("EVENTSTREAM_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn postgres_url(database: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{database}")
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database for one test; removed when the test ends.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    // Held so the directory lives as long as the database.
    File(#[allow(dead_code)] tempfile::TempDir),
    Postgres(String),
}

impl TestDatabase {
    /// A fresh database for `backend` (SQLite for [`Setup::Pushpin`]).
    /// The harness runs PostgreSQL tests only where the server answered.
    pub async fn create(backend: Setup) -> TestDatabase {
        match backend {
            Setup::Sqlite | Setup::Pushpin => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("events.db").display());
                TestDatabase {
                    url,
                    cleanup: Cleanup::File(dir),
                }
            }
            Setup::Postgres => {
                let name = unique("es_test");
                let admin = sqlx::PgPool::connect(&postgres_admin_url())
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL unreachable at {}: {e}", postgres_admin_url())
                    });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create a test database");
                admin.close().await;
                TestDatabase {
                    url: postgres_url(&name),
                    cleanup: Cleanup::Postgres(name),
                }
            }
        }
    }

    /// Drops a PostgreSQL test database (SQLite files go with their TempDir).
    pub async fn remove(self) {
        if let Cleanup::Postgres(name) = &self.cleanup
            && let Ok(admin) = sqlx::PgPool::connect(&postgres_admin_url()).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}
