//! Crash-atomic multi-ref updates: the commit record.
//!
//! Each ref is its own object, so an atomic update of many refs is many writes, and a server
//! killed between two of them would leave some refs changed and others not (rolling back on
//! errors cannot help a dead process). The commit record makes the update atomic:
//!
//! The record lives at `.git/hypha-remote/update.json` and carries a generation number that
//! every committed atomic update increments.
//!
//! 1. Under the repository lock, after every compare-and-swap check has passed and before any
//!    ref is written, `update` writes the record of generation `g + 1` holding the planned
//!    `(ref, old, new)` list, conditionally on the record it read (so two servers sharing a
//!    bucket cannot both commit). **This write is the commit point**: from then on the update
//!    counts as done, whoever finishes it.
//! 2. The refs are written (conditional puts, as before).
//! 3. The record is marked finished: same generation, empty list.
//!
//! Whoever takes the repository lock next (`update`, `compact`) first rolls an unfinished
//! record forward, idempotently, ref by ref: a ref already at `new` is done; a ref still at
//! `old` is written to `new` conditionally; a ref at any other value was moved by a writer
//! outside this lock (Hypha itself, another server on the bucket): theirs stands, and it is
//! logged. Then the record is marked finished.
//!
//! Readers (`refs`) read the record, then the refs, then the record again, and overlay the
//! `new` values of an unfinished record (the committed state) onto what they read. If a whole
//! update started and finished between the two record reads (the generation moved on, and the
//! later record is finished), some of its refs may have been read before it and some after:
//! the read is repeated. So a reader of this API sees all of an atomic update or none. A
//! reader that saw an unfinished record while no update of this process holds the lock (its
//! writer died) rolls it forward, so that Hypha's own reader, which reads the ref objects and
//! knows nothing of the record, also sees the whole update soon after a restart.
//!
//! An atomic update that fails after its commit point (a writer outside the lock moved one of
//! its refs, or storage failed) rolls its writes back and then marks the record finished;
//! readers in that window saw its new values. If the process dies during the roll-back, the
//! record stays unfinished and the update is rolled forward instead: all refs change, as
//! promised for a push whose answer never arrived.
//!
//! Costs: the record is written only for atomic updates with more than one ref to write (one
//! write is atomic by itself); every locked operation costs one `GET` of the record, every
//! `refs` read two.
//! Nothing is written under `.git/refs/` but refs, and ref bodies are unchanged: the layout
//! stays Hypha's (docs/design.md §3). Only the [`Backend`](crate::storage::Backend) trait is used
//! (conditional puts and deletes), so this works on local disk and S3 alike.

use super::refs::Current;
use super::{Repository, REF_CONCURRENCY};
use crate::storage::{Error, PutMode};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format version of the record; a record of another version is refused, not guessed at.
const VERSION: u32 = 1;

/// The commit record of the latest atomic update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub version: u32,
    /// Counts committed atomic updates; also makes every record's bytes (and etag) unique.
    pub generation: u64,
    /// Unix seconds when the update committed: for people reading the bucket.
    pub committed_at: u64,
    /// The planned refs while unfinished; empty once every ref is written.
    pub updates: Vec<Planned>,
}

/// One ref of a committed update: its value when planned, and its value after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Planned {
    #[serde(rename = "ref")]
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A record as read or written, with the etag that the next write is conditional on.
#[derive(Debug)]
pub(crate) struct Stored {
    pub record: Record,
    etag: String,
}

/// The record as a locked operation found it (after rolling it forward): what the next
/// commit builds on. `None`: no atomic update ever committed in this repository.
#[derive(Debug, Default)]
pub(crate) struct Base(Option<Stored>);

impl Record {
    pub fn is_finished(&self) -> bool {
        self.updates.is_empty()
    }

    /// What readers see while a record is present: the refs after the update.
    pub fn overlay(&self, refs: &mut BTreeMap<String, String>) {
        for planned in &self.updates {
            match &planned.new {
                Some(new) => {
                    refs.insert(planned.name.clone(), new.clone());
                }
                None => {
                    refs.remove(&planned.name);
                }
            }
        }
    }
}

/// How rolling one ref forward ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// At `new` now (written, or already there).
    Done,
    /// Moved by someone outside the lock: left as it is.
    Moved,
}

impl Repository {
    pub(crate) fn record_key(&self) -> String {
        self.key("hypha-remote/update.json")
    }

    /// The commit record, if an atomic update is in flight or was interrupted.
    pub(crate) async fn read_record(&self) -> Result<Option<Stored>, Error> {
        let key = self.record_key();
        let obj = match self.backend.get(&key).await {
            Ok(obj) => obj,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        // A record this code cannot read would be rolled forward wrongly or not at all: the
        // repository stays unreadable until a person looks, and the error says where.
        let record: Record = serde_json::from_slice(&obj.body).map_err(|e| {
            Error::backend(
                &key,
                format!("unreadable commit record of {}: {e}", self.name),
            )
        })?;
        if record.version != VERSION {
            return Err(Error::backend(
                &key,
                format!(
                    "commit record of {} has version {}, expected {VERSION}",
                    self.name, record.version
                ),
            ));
        }
        Ok(Some(Stored {
            record,
            etag: obj.etag,
        }))
    }

    /// Write `record` conditionally on `base` (the record read under the lock, or none).
    async fn write_record(&self, record: Record, base: Option<&Stored>) -> Result<Stored, Error> {
        let key = self.record_key();
        let body = serde_json::to_vec(&record).map_err(|e| Error::backend(&key, e))?;
        let mode = match base {
            Some(base) => PutMode::IfMatch(base.etag.clone()),
            None => PutMode::IfNoneMatch,
        };
        let etag = self.backend.put(&key, Bytes::from(body), mode).await?;
        Ok(Stored { record, etag })
    }

    /// Commit an atomic update: write its record. The caller holds the lock and has checked
    /// every ref. A record changed since `base` was read (another server process committing
    /// on the same store) makes this update busy rather than mixing two.
    pub(crate) async fn commit_record(
        &self,
        base: &Base,
        updates: Vec<Planned>,
    ) -> Result<Stored, Error> {
        let record = Record {
            version: VERSION,
            generation: base.0.as_ref().map_or(0, |b| b.record.generation) + 1,
            committed_at: crate::auth::unix_now(),
            updates,
        };
        match self.write_record(record, base.0.as_ref()).await {
            Err(e) if e.is_lost_race() => Err(Error::Busy {
                key: self.name.clone(),
            }),
            other => other,
        }
    }

    /// Mark a record finished: its refs are all written (or rolled back). A record written
    /// by someone else since (the etag differs) is theirs to finish.
    pub(crate) async fn finish_record(&self, stored: &Stored) -> Result<Stored, Error> {
        let record = Record {
            updates: Vec::new(),
            ..stored.record.clone()
        };
        match self.write_record(record, Some(stored)).await {
            Err(e) if e.is_lost_race() => Err(Error::Busy {
                key: self.name.clone(),
            }),
            other => other,
        }
    }

    /// Finish an update interrupted after its commit point, if there is one; returns the
    /// record that the next commit builds on. Call with the repository lock held, before
    /// reading refs to change them.
    pub(crate) async fn roll_forward(&self) -> Result<Base, Error> {
        Ok(self.roll_forward_noting().await?.0)
    }

    /// [`Repository::roll_forward`], also saying whether it wrote anything: refs read while
    /// it ran are then to be read again.
    pub(crate) async fn roll_forward_noting(&self) -> Result<(Base, bool), Error> {
        match self.read_record().await? {
            None => Ok((Base(None), false)),
            Some(stored) if stored.record.is_finished() => Ok((Base(Some(stored)), false)),
            Some(stored) => Ok((Base(Some(self.roll_forward_record(&stored).await?)), true)),
        }
    }

    /// Roll `stored` forward (see the module docs), then mark it finished.
    async fn roll_forward_record(&self, stored: &Stored) -> Result<Stored, Error> {
        let updates = &stored.record.updates;
        let outcomes: Vec<(usize, Result<Outcome, Error>)> =
            futures_util::stream::iter(0..updates.len())
                .map(|i| async move { (i, self.roll_forward_one(&updates[i]).await) })
                .buffer_unordered(REF_CONCURRENCY)
                .collect()
                .await;
        let mut moved = Vec::new();
        for (i, outcome) in outcomes {
            match outcome? {
                Outcome::Done => {}
                Outcome::Moved => moved.push(updates[i].name.as_str()),
            }
        }
        if !moved.is_empty() {
            tracing::warn!(
                "{}: finishing an interrupted atomic update: {} ref(s) changed by another \
                 writer meanwhile were left as they are: {}",
                self.name,
                moved.len(),
                moved.join(", ")
            );
        }
        self.finish_record(stored).await
    }

    /// A consistent read of every ref: `read` lists and reads the refs (without the record);
    /// this brackets it by two reads of the record and overlays unfinished updates. Repeats
    /// `read` when a whole atomic update slipped in between; [`Error::Busy`] if it keeps
    /// happening. Also says whether an unfinished record was overlaid.
    pub(crate) async fn consistent_refs<F, Fut>(
        &self,
        read: F,
    ) -> Result<(BTreeMap<String, String>, bool), Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<BTreeMap<String, String>, Error>>,
    {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let before = self.read_record().await?;
            let mut refs = read().await?;
            let after = self.read_record().await?;
            let generation = |s: &Option<Stored>| s.as_ref().map_or(0, |s| s.record.generation);
            let unfinished = |s: &Option<Stored>| {
                s.as_ref()
                    .filter(|s| !s.record.is_finished())
                    .map(|s| s.record.clone())
            };
            let (g0, g1) = (generation(&before), generation(&after));
            // Same generation: no update committed in between, and an update in flight at
            // the first read is covered by its overlay. One more, still unfinished: it
            // committed in between, and its overlay covers it.
            let consistent = g1 == g0 || (g1 == g0 + 1 && unfinished(&after).is_some());
            if !consistent {
                continue;
            }
            let mut overlaid = false;
            for record in [unfinished(&before), unfinished(&after)]
                .into_iter()
                .flatten()
            {
                record.overlay(&mut refs);
                overlaid = true;
            }
            return Ok((refs, overlaid));
        }
        Err(Error::Busy {
            key: self.name.clone(),
        })
    }

    async fn roll_forward_one(&self, planned: &Planned) -> Result<Outcome, Error> {
        let key = self.key(&planned.name);
        // Two tries: a lost race with someone outside the lock is re-read once, and then it
        // is either done, theirs, or still ours to write.
        for _ in 0..2 {
            let cur: Current = self.read_ref(&planned.name).await?;
            if cur.oid == planned.new && (cur.etag.is_some() == planned.new.is_some()) {
                return Ok(Outcome::Done);
            }
            if cur.oid != planned.old {
                return Ok(Outcome::Moved);
            }
            let written = match (&planned.new, &cur.etag) {
                (Some(new), Some(etag)) => self
                    .backend
                    .put(
                        &key,
                        Bytes::from(format!("{new}\n")),
                        PutMode::IfMatch(etag.clone()),
                    )
                    .await
                    .map(drop),
                (Some(new), None) => self
                    .backend
                    .put(&key, Bytes::from(format!("{new}\n")), PutMode::IfNoneMatch)
                    .await
                    .map(drop),
                (None, Some(etag)) => self.backend.delete(&key, Some(etag)).await,
                (None, None) => return Ok(Outcome::Done),
            };
            match written {
                Ok(()) => return Ok(Outcome::Done),
                Err(e) if e.is_lost_race() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome::Moved)
    }
}
