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

        use crate::storage::append::{Batch, assign_ids};
        use crate::storage::handle::{to_i64, to_u64};
        use crate::storage::rows::{AppendToken, ChannelState, NewEvent, skip_users_column, token};

        /// Appends `events` in the open transaction on `connection` and
        /// returns their ids. The counter rows stay locked (PostgreSQL) or
        /// the database stays write-locked (SQLite) until it ends.
        pub(crate) async fn append(
            connection: &mut $connection,
            events: &[&NewEvent],
            now_ms: i64,
        ) -> Result<Vec<u64>, sqlx::Error> {
            let Batch {
                counts,
                last_tokens,
            } = Batch::of(events);
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

    /// Tells the other instances of the ranges committed by this
    /// transaction, inside it.
    pub(crate) use crate::storage::sql::announce;
}
