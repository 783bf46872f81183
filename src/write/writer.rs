//! The single writer: appends events to storage with group commit, then
//! hands them to the fan-out in id order.
//!
//! ```text
//! send ──► queue ──► writer task: take everything queued (≤ commit_batch)
//!                      ├─ one transaction: bump counters, insert rows, commit
//!                      ├─ fanout.event(event) for each, in id order
//!                      └─ answer each send with its id
//! ```
//!
//! Concurrent senders share one commit (and one fsync under `power`
//! durability), which is what lifts durable throughput far above one commit
//! per event. Because one task commits and publishes, every subscriber
//! receives a channel's events in id order.
//!
//! A batch that fails is settled, never guessed: every event carries an
//! append token stored with its row (unique per writer and append), so the
//! writer asks storage which of them made it (a COMMIT whose answer was lost
//! may have succeeded), delivers those under their stored ids, and retries
//! the rest one by one (so one bad event cannot fail its neighbours; a
//! retry of an event that did commit meanwhile fails on the unique token
//! instead of storing it twice). A sender whose outcome cannot be known
//! (the commit's answer was lost and storage cannot be asked) gets
//! [`Error::Indeterminate`], never a silent duplicate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::config::Durability;
use crate::delivery::fanout::{Fanout, LiveEvent};
use crate::error::Error;
use crate::measure::metrics::Metrics;
use crate::measure::timing::{self, Stamps};
use crate::storage::{
    AppendError, AppendToken, KeptConnection, NewEvent, Storage, new_writer_id, now_ms,
};
use crate::wire::notice::Seal;
use crate::write::gate::WriteGate;
use crate::write::held_back::HeldBack;

/// Requests waiting for the writer, at most. Senders wait for room beyond it.
const QUEUE_DEPTH: usize = 16 * 1024;

/// Bytes of sends the writer holds at most: queued, kept aside for a
/// transaction, or in the batch being committed, until each is answered.
/// Senders wait for room beyond it (a send larger than all of it waits for
/// the writer to be empty), so a writer held up by its database, or by an
/// application's transaction, costs a bounded amount of memory however
/// many tasks send.
pub(crate) const QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// The unit the byte budget counts in.
const BUDGET_UNIT: usize = 1024;

/// Sends kept aside for transactions' channels, at most; beyond it the
/// writer takes no more until a transaction ends, and senders wait in the
/// queue.
const HELD_BACK_DEPTH: usize = QUEUE_DEPTH;

struct Append {
    event: NewEvent,
    body: Bytes,
    /// With `delivery_timing`: when it was sent.
    sent: Option<Instant>,
    reply: oneshot::Sender<Result<Appended, Error>>,
    /// Its share of [`QUEUE_BYTES`], given back when it is answered.
    _room: OwnedSemaphorePermit,
}

/// A committed event's id and, with `delivery_timing`, when its fan-out
/// ended.
type Appended = (u64, Option<Instant>);

/// The sending side of the writer queue.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Append>,
    /// [`QUEUE_BYTES`], in units of [`BUDGET_UNIT`].
    room: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Shared with the application's transactions.
    gate: Arc<WriteGate>,
    announce_as: Option<Arc<Seal>>,
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append")
            .field("channel", &self.event.channel)
            .finish()
    }
}

/// How a writer talks to storage.
struct Committer {
    storage: Storage,
    metrics: Arc<Metrics>,
    fanout: Arc<Fanout>,
    durability: Durability,
    /// This writer's half of every append token: random per process, so
    /// processes sharing a database never mint the same token.
    writer: i64,
    /// With `broadcast = "postgres"`: this instance's seal on the bus, and
    /// each batch notifies the other instances inside its transaction.
    announce_as: Option<Arc<Seal>>,
    /// Shared with applications' transactions. On SQLite each batch waits
    /// for its turn behind them instead of running into their write lock;
    /// on PostgreSQL sends to the channels they hold are kept aside until
    /// they end.
    gate: Arc<WriteGate>,
    /// The next append number. Handed out here, in the writer task, in the
    /// order events are committed: a stream compares tokens to tell a
    /// repeat from an event appended after the log went back in time.
    next_append: i64,
    /// The SQLite connection kept between batches.
    kept: KeptConnection,
}

impl Writer {
    /// Starts the writer task on the current runtime. With `announce_as`
    /// (the instance's seal on the bus), every committed batch is announced to the other
    /// instances sharing the database.
    pub(crate) fn spawn(
        storage: Storage,
        fanout: Arc<Fanout>,
        durability: Durability,
        commit_batch: usize,
        announce_as: Option<Arc<Seal>>,
        metrics: Arc<Metrics>,
    ) -> Writer {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let gate = Arc::new(WriteGate::default());
        let id = new_writer_id();
        let committer = Committer {
            metrics: Arc::clone(&metrics),
            storage,
            fanout,
            durability,
            writer: id,
            announce_as: announce_as.clone(),
            gate: Arc::clone(&gate),
            next_append: 1,
            kept: KeptConnection::default(),
        };
        tokio::spawn(run(requests, committer, commit_batch));
        Writer {
            queue,
            room: Arc::new(Semaphore::new(QUEUE_BYTES / BUDGET_UNIT)),
            metrics,
            gate,
            announce_as,
        }
    }

    /// Who may write the event log now; shared with
    /// [`EventTx`](crate::EventTx).
    pub(crate) fn gate(&self) -> &Arc<WriteGate> {
        &self.gate
    }

    /// This instance's seal when committed batches are announced inside
    /// their transaction (the PostgreSQL bus).
    pub(crate) fn announce_as(&self) -> Option<&Seal> {
        self.announce_as.as_deref()
    }

    /// Appends one event (whose `event:`/`data:` lines are already encoded
    /// in `body`) and waits until it is committed and published. `sent`:
    /// when it was sent, to time its way out (`delivery_timing`).
    /// Fails at once when the calling task holds an open
    /// [`EventTx`](crate::EventTx), which the append would wait for.
    pub(crate) async fn append(
        &self,
        event: NewEvent,
        body: Bytes,
        sent: Option<Instant>,
    ) -> Result<u64, Error> {
        self.gate.check_not_holding()?;
        let started = Instant::now();
        let weight = event.data.len() + body.len() + event.channel.len() + 256;
        let units = (weight / BUDGET_UNIT + 1).min(QUEUE_BYTES / BUDGET_UNIT);
        let room = Arc::clone(&self.room)
            .acquire_many_owned(units as u32)
            .await
            .map_err(|_| Error::Closed)?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Append {
                event,
                body,
                sent,
                reply,
                _room: room,
            })
            .await
            .map_err(|_| Error::Closed)?;
        let (seq, fanned_out) = answer.await.map_err(|_| Error::Closed)??;
        self.metrics.published(started.elapsed());
        if let Some(fanned_out) = fanned_out {
            timing::answered(fanned_out, &self.metrics.stage_seconds);
        }
        Ok(seq)
    }

    /// Bytes of sends the writer holds now (about: counted in KiB).
    pub(crate) fn queued_bytes(&self) -> u64 {
        let free = self.room.available_permits();
        ((QUEUE_BYTES / BUDGET_UNIT).saturating_sub(free) * BUDGET_UNIT) as u64
    }
}

/// The channel a request appends to (how held-back sends are sorted).
fn channel_of(append: &Append) -> &str {
    &append.event.channel
}

async fn run(mut requests: mpsc::Receiver<Append>, mut committer: Committer, commit_batch: usize) {
    let mut batch: Vec<Append> = Vec::with_capacity(commit_batch);
    let mut held_back: HeldBack<Append> = HeldBack::default();
    // Whether kept-aside sends may go now: a transaction let its channels
    // go, or the last batch of them stopped at `commit_batch`.
    let mut may_let_go = false;
    loop {
        if may_let_go {
            may_let_go = held_back.let_go(
                &mut batch,
                commit_batch,
                &committer.gate.held_channels(),
                channel_of,
            );
            committer.metrics.set_sends_held_back(held_back.len());
        }
        if batch.is_empty() {
            let received = tokio::select! {
                biased;
                () = committer.gate.channels_let_go(), if !held_back.is_empty() => {
                    may_let_go = true;
                    continue;
                }
                () = committer.kept.released_on_close() => continue,
                received = requests.recv_many(&mut batch, commit_batch),
                    if held_back.len() < HELD_BACK_DEPTH => received,
            };
            if received == 0 {
                if held_back.is_empty() {
                    break;
                }
                // Closed: no transaction is left (each keeps the queue
                // open), so what was kept aside goes.
                held_back.take_front(&mut batch, commit_batch, channel_of);
                committer.metrics.set_sends_held_back(held_back.len());
            } else if !held_back.is_empty() || committer.gate.holds_any_channel() {
                // Only sends just taken: those let go above already waited.
                held_back.keep_aside(&mut batch, &committer.gate.held_channels(), channel_of);
                committer.metrics.set_sends_held_back(held_back.len());
                if batch.is_empty() {
                    continue;
                }
            }
        }
        let mut appends = std::mem::take(&mut batch);
        let timed = appends.iter().any(|append| append.sent.is_some());
        let taken = timed.then(Instant::now);
        // Held through delivery, so a transaction's events and the batch's
        // reach the fan-out in commit order.
        let _turn = match committer.storage {
            Storage::Sqlite(_) => Some(committer.gate.writer_turn().await),
            Storage::Postgres(_) => None,
        };
        for append in &mut appends {
            append.event.token = AppendToken {
                writer: committer.writer,
                seq: committer.next_append,
            };
            committer.next_append += 1;
        }
        match committer.append(&appends).await {
            Ok(ids) => {
                committer.metrics.committed(appends.len());
                let committed = timed.then(Instant::now);
                let taken = taken.zip(committed);
                for (append, seq) in appends.into_iter().zip(ids) {
                    committer.deliver(append, seq, taken);
                }
            }
            Err(failure) => committer.settle(appends, failure).await,
        }
    }
}

impl Committer {
    async fn append(&mut self, appends: &[Append]) -> Result<Vec<u64>, AppendError> {
        let events: Vec<&NewEvent> = appends.iter().map(|append| &append.event).collect();
        self.storage
            .append_batch(
                &mut self.kept,
                &events,
                self.durability,
                now_ms(),
                self.announce_as.as_deref(),
            )
            .await
    }

    /// Fans a committed event out and answers its sender. `timed`: when
    /// its batch was taken and committed, if it is timed (events settled
    /// after a failure are not).
    fn deliver(&self, append: Append, seq: u64, timed: Option<(Instant, Instant)>) {
        let Append {
            event,
            body,
            sent,
            reply,
            ..
        } = append;
        let stamps = sent
            .zip(timed)
            .map(|(sent, (taken, committed))| Stamps::fanning_out(sent, taken, committed));
        let live = LiveEvent {
            token: Some(event.token),
            stamps,
            ..LiveEvent::new(event.channel, Some(seq), body, event.skip_users)
        };
        let live = Arc::new(live);
        self.fanout.event(&live);
        let fanned_out = stamps.map(|stamps| stamps.fanned_out(&self.metrics.stage_seconds));
        // The sender may have gone away (its request was cancelled); the event
        // is committed and delivered regardless.
        let _ = reply.send(Ok((seq, fanned_out)));
    }

    /// Which of `appends` storage holds, by append number; `None` when it
    /// cannot be asked.
    async fn stored(&self, appends: &[Append]) -> Option<BTreeMap<i64, u64>> {
        let seqs: Vec<i64> = appends
            .iter()
            .map(|append| append.event.token.seq)
            .collect();
        match self.storage.find_appended(self.writer, &seqs).await {
            Ok(found) => Some(found),
            Err(error) => {
                log::error!("eventstream: cannot read back a failed append: {error}");
                None
            }
        }
    }

    /// After `failure` of a batch: delivers what was stored, retries the
    /// rest one by one, and answers every sender with what happened.
    async fn settle(&mut self, appends: Vec<Append>, failure: AppendError) {
        // Failed before COMMIT, or refused by it: nothing was stored.
        let found = if failure.maybe_committed {
            self.stored(&appends).await
        } else {
            Some(BTreeMap::new())
        };
        let Some(found) = found else {
            for append in appends {
                fail(append, &failure);
            }
            return;
        };
        let mut rest = Vec::new();
        for append in appends {
            match found.get(&append.event.token.seq) {
                // The batch is one transaction: all of it made it, in order.
                Some(seq) => self.deliver(append, *seq, None),
                None => rest.push(append),
            }
        }
        match rest.len() {
            0 => {}
            1 if !failure.maybe_committed => {
                for append in rest {
                    fail(append, &failure);
                }
            }
            count => {
                log::warn!(
                    "eventstream: a batch of {count} events failed ({}); retrying one by one",
                    failure.error
                );
                for append in rest {
                    self.retry(append).await;
                }
            }
        }
    }

    /// One more attempt at a single event.
    async fn retry(&mut self, append: Append) {
        let appends = [append];
        let failure = match self.append(&appends).await {
            Ok(ids) => {
                let [append] = appends;
                return self.deliver(append, ids[0], None);
            }
            Err(failure) => failure,
        };
        let found = self.stored(&appends).await;
        let [append] = appends;
        match found
            .as_ref()
            .and_then(|found| found.get(&append.event.token.seq))
        {
            // An earlier attempt committed after all (this one then failed
            // on the unique token).
            Some(seq) => self.deliver(append, *seq, None),
            None if found.is_some() && !failure.maybe_committed => fail(append, &failure),
            None if found.is_some() => {
                // Not there yet, but its COMMIT got no answer: it may still
                // land. Say so rather than guess.
                let _ = append.reply.send(Err(Error::Indeterminate));
            }
            None => fail(append, &failure),
        }
    }
}

/// Answers a sender whose append failed: a storage error when nothing was
/// stored, `Indeterminate` when its commit may have happened and storage
/// could not confirm either way.
fn fail(append: Append, failure: &AppendError) {
    let error = if failure.maybe_committed {
        log::error!(
            "eventstream: the commit of an event on {:?} got no answer ({}); its outcome is unknown",
            append.event.channel,
            failure.error
        );
        Error::Indeterminate
    } else {
        log::error!(
            "eventstream: storing an event on {:?} failed: {}",
            append.event.channel,
            failure.error
        );
        Error::Storage(clone_error(&failure.error))
    };
    let _ = append.reply.send(Err(error));
}

/// sqlx errors are not `Clone`; one failure may answer several senders.
fn clone_error(error: &rocket_db_pools::sqlx::Error) -> rocket_db_pools::sqlx::Error {
    rocket_db_pools::sqlx::Error::Protocol(error.to_string())
}
