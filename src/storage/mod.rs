//! The event log in SQL: SQLite or PostgreSQL, chosen by the database URL.
//!
//! Both backends run the same SQL (`INSERT .. ON CONFLICT .. RETURNING`
//! works in SQLite 3.35+ and PostgreSQL); only durability settings and
//! transaction isolation differ. [`dispatch!`] writes each operation once and
//! type-checks it against both concrete pool types, which keeps sqlx's
//! generic bounds out of the code.
//!
//! - `rows`: what is stored: new and stored events, counter rows;
//! - `append`: a batch in one transaction, and commits in doubt;
//! - `read`: counter rows, replay pages, snapshots;
//! - `sql`: the statements both backends run, written once;
//! - [`in_transaction`]: appending inside the application's transaction;
//! - [`trim`]: retention's pieces; [`migrations`]: the schema.

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
macro_rules! dispatch {
    ($storage:expr, $pool:ident => $body:expr) => {
        match $storage {
            $crate::storage::Storage::Sqlite($pool) => $body,
            $crate::storage::Storage::Postgres($pool) => $body,
        }
    };
}

// The SQL macros first: every file below may use them.
#[macro_use]
mod sql;

mod append;
mod handle;
pub(crate) mod in_transaction;
mod kept_connection;
pub(crate) mod migrations;
mod read;
mod rows;
pub(crate) mod trim;

pub(crate) use append::{AppendError, InDoubt, commit_outcome_unknown};
pub(crate) use handle::{Storage, now_ms};
pub(crate) use kept_connection::KeptConnection;
pub use rows::Event;
pub(crate) use rows::{AppendToken, ChannelState, NewEvent, new_writer_id};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::append::assign_ids;
    use super::kept_connection::KEEP_FROM;
    use super::*;

    #[tokio::test]
    async fn a_kept_connection_is_let_go_when_the_pool_closes() {
        let dir = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}/kept.db?mode=rwc", dir.path().display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(KEEP_FROM)
            .connect(&url)
            .await
            .expect("a pool");
        let mut kept = KeptConnection::default();
        kept.keep(pool.acquire().await.expect("a connection"), &pool);
        assert!(kept.kept().connection.is_some(), "kept");
        // Closing waits for every connection: while one is kept, forever.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(200), pool.close()).await;
        assert!(waiting.is_err(), "closing waits for the kept connection");
        let released = async {
            kept.released_on_close().await;
            pool.close().await;
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), released)
            .await
            .expect("closing ends once the writer lets go");
        assert!(kept.take().is_none());
    }

    #[test]
    fn resume_rule() {
        let fresh = ChannelState {
            last_id: 0,
            trimmed_through: 0,
            last_token: None,
        };
        assert!(fresh.can_resume_from(0));
        assert!(!fresh.can_resume_from(1));
        let trimmed = ChannelState {
            last_id: 10,
            trimmed_through: 4,
            last_token: None,
        };
        assert!(!trimmed.can_resume_from(0));
        assert!(!trimmed.can_resume_from(3));
        assert!(trimmed.can_resume_from(4));
        assert!(trimmed.can_resume_from(9));
        assert!(trimmed.can_resume_from(10));
        assert!(!trimmed.can_resume_from(11));
        let all_gone = ChannelState {
            last_id: 10,
            trimmed_through: 10,
            last_token: None,
        };
        assert!(all_gone.can_resume_from(10));
        assert!(!all_gone.can_resume_from(9));
    }

    #[test]
    fn ids_follow_counters_per_channel_in_send_order() {
        let event = |channel: &str| NewEvent {
            channel: channel.into(),
            event_type: "m".into(),
            data: "1".into(),
            skip_users: vec![],
            token: AppendToken::default(),
        };
        let events = [event("a"), event("b"), event("a"), event("a")];
        let events: Vec<&NewEvent> = events.iter().collect();
        let counts = BTreeMap::from([("a", 3), ("b", 1)]);
        let last_ids = BTreeMap::from([("a".to_string(), 13), ("b".to_string(), 1)]);
        assert_eq!(assign_ids(&events, &counts, &last_ids), [11, 1, 12, 13]);
    }
}
