//! Appending inside an application's own transaction
//! ([`EventTx`](crate::EventTx)): the same counter bump and insert the
//! writer runs, on a connection whose transaction the application opened
//! and will commit. One module per backend, written once by a macro
//! because sqlx's executors are concrete per backend.

/// The statements an [`EventTx`](crate::EventTx) runs on `$connection`.
macro_rules! appending_on {
    ($connection:ty) => {
        use std::collections::BTreeMap;

        use rocket_db_pools::sqlx::{self, QueryBuilder, Row};

        use crate::notice::{self, Range, Seal};
        use crate::storage::{
            AppendToken, ChannelState, NewEvent, assign_ids, skip_users_column, to_i64, to_u64,
            token,
        };

        /// Appends `events` in the open transaction on `connection` and
        /// returns their ids. The counter rows stay locked (PostgreSQL) or
        /// the database stays write-locked (SQLite) until it ends.
        pub(crate) async fn append(
            connection: &mut $connection,
            events: &[&NewEvent],
            now_ms: i64,
        ) -> Result<Vec<u64>, sqlx::Error> {
            let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
            let mut last_tokens: BTreeMap<&str, AppendToken> = BTreeMap::new();
            for event in events {
                *counts.entry(event.channel.as_str()).or_default() += 1;
                last_tokens.insert(event.channel.as_str(), event.token);
            }
            let last_ids = bump_counters!(connection, &counts, &last_tokens);
            let ids = assign_ids(events, &counts, &last_ids);
            insert_events!(connection, events, &ids, now_ms);
            Ok(ids)
        }

        /// The id of `channel`'s newest event as the open transaction sees
        /// it (its own sends included); 0 when none was ever sent.
        pub(crate) async fn position(
            connection: &mut $connection,
            channel: &str,
        ) -> Result<u64, sqlx::Error> {
            let channels = [channel.to_owned()];
            let states: BTreeMap<String, ChannelState> = read_states!(&mut *connection, &channels);
            Ok(states.get(channel).map_or(0, |state| state.last_id))
        }

        /// Tells the other instances of the ranges committed by this
        /// transaction, inside it: they hear it only if it commits.
        #[allow(
            dead_code,
            reason = "only the PostgreSQL bus announces inside a transaction"
        )]
        pub(crate) async fn announce(
            connection: &mut $connection,
            seal: &Seal,
            ranges: Vec<Range>,
        ) -> Result<(), sqlx::Error> {
            for payload in seal.committed(ranges, crate::storage::now_ms()) {
                sqlx::query(notice::NOTIFY_SQL)
                    .bind(seal.channel())
                    .bind(payload)
                    .execute(&mut *connection)
                    .await?;
            }
            Ok(())
        }
    };
}

pub(crate) mod sqlite {
    appending_on!(sqlx::SqliteConnection);

    /// Takes the database's write lock now, at the start of the
    /// transaction: a deferred transaction that reads first and writes
    /// later can be refused (`SQLITE_BUSY`, without waiting) when another
    /// connection wrote meanwhile. The statement changes nothing.
    pub(crate) async fn lock_writes(
        connection: &mut sqlx::SqliteConnection,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE eventstream_channels SET last_id = last_id WHERE 0")
            .execute(connection)
            .await
            .map(drop)
    }
}

pub(crate) mod postgres {
    appending_on!(sqlx::PgConnection);
}
