//! `update`, the commit point of a push (docs/design.md §4, docs/hypha.md §7.2): validate the request,
//! check its packs and that they (or live packs) hold every new ref value
//! ([`objects`](super::objects)), then compare-and-swap every ref under the repository lock. An atomic batch
//! that fails is undone; one that writes several refs commits through a record first
//! ([`journal`](super::journal)), so that a crash leaves all of it or none.
//!
//! Owns the request and its outcome in the store's words ([`Update`], [`UpdateOutcome`]); the
//! server translates the API's `Update` into them and the outcome back. Does not check
//! permissions or fast-forwards (the server and the client do).

use super::objects;
use super::refs::Current;
use super::{check_pack_name, check_ref, Repository, LOCK_TIMEOUT, REF_CONCURRENCY};
use crate::names;
use crate::storage::{Error, PutMode};
use bytes::Bytes;
use futures_util::StreamExt;
use gix::ObjectId;
use std::collections::{BTreeMap, BTreeSet};

/// Git's words (receive-pack, `receive.denyDeleteCurrent`), so users see what git shows.
pub const DENY_DELETE_CURRENT: &str = "deletion of the current branch prohibited";

/// Detail of the other refs when an atomic update fails.
pub const ATOMIC_FAILED: &str = "atomic push failed";

/// One `update`: the refs to move and the packs they need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Packs uploaded for this push; each must be complete.
    pub packs: Vec<String>,
    pub updates: Vec<RefUpdate>,
    /// All refs change or none does.
    pub atomic: bool,
    /// Point HEAD at this ref when `HEAD` is missing (first push).
    pub set_head_if_missing: Option<String>,
    /// Packs of `packs` that this very request stored from memory, checked there (a thin
    /// pack the server completed): name -> (idx size, pack size). `update` reads nothing more
    /// of them. Set by the server only, never from the request.
    pub stored: BTreeMap<String, (u64, u64)>,
    /// Packs that came inline, checked in memory: `update` writes them itself, beside its own
    /// reads and only once it knows it writes a ref ([`super::inline`]).
    pub inline: Vec<super::InlinePack>,
}

/// One compare-and-swap: `old: None` = must not exist, `new: None` = delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What `update` did: one outcome per requested ref, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOutcome {
    pub results: Vec<RefOutcome>,
}

/// What became of one ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefOutcome {
    pub name: String,
    pub status: RefStatus,
    /// With [`RefStatus::Stale`]: the value found (`None` = ref absent).
    pub current: Option<String>,
    /// With [`RefStatus::Rejected`]: why, in words.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefStatus {
    Ok,
    /// `old` did not match the current value; nothing was written for this ref.
    Stale,
    /// Refused for another reason (atomic batch failed, policy, no pack holds the new
    /// value); see `detail`.
    Rejected,
}

/// What to write for one accepted update.
#[derive(Debug, Clone)]
enum Write {
    Create {
        new: String,
    },
    Replace {
        new: String,
        etag: String,
    },
    Delete {
        etag: String,
    },
    /// Delete of a ref that is already absent: nothing to do.
    Nothing,
}

/// How to undo one write if an atomic update fails later.
struct Undo {
    key: String,
    previous: Option<String>,
    /// Etag of what we wrote; `None` when we deleted.
    written: Option<String>,
}

impl Repository {
    /// The commit point of a push: validate, check the packs, then compare-and-swap every
    /// ref under the repository lock. Per-ref outcomes are in the response; `Err` means the
    /// request as a whole was refused (bad name, missing pack) or storage failed.
    /// A repository that does not exist is [`Error::NotFound`] naming the repository itself
    /// ([`Repository::name`]), checked before anything is written.
    pub async fn update(&self, req: &Update) -> Result<UpdateOutcome, Error> {
        validate_updates(req)?;
        // An update that names uploaded packs reads them now: the repository must be there
        // first. One that does not finds out beside its other reads, under the lock; so does
        // one whose packs this request stored itself (a thin pack completed from memory, after
        // the route found the repository), as nothing of them is read: a round trip less.
        let checked_exists = req.packs.iter().any(|p| !req.stored.contains_key(p));
        if checked_exists && !self.exists().await? {
            return Err(self.not_found());
        }
        let named = self.check_packs(&req.packs, &req.stored).await?;
        // Before the lock: packs only come (named ones, when this update commits them) or go
        // after a compaction put their objects in another live pack, so what is found now
        // stays found. A ref that does not move (new = old) points at nothing new.
        let wanted: BTreeSet<ObjectId> = req
            .updates
            .iter()
            .filter(|u| u.new.is_some() && u.new != u.old)
            .filter_map(|u| u.new.as_deref().and_then(objects::object_id))
            .filter(|id| !req.inline.iter().any(|p| p.holds(id)))
            .collect();
        let missing = self.missing_objects(wanted, &named).await?;

        let _guard = tokio::time::timeout(LOCK_TIMEOUT, self.lock.lock())
            .await
            .map_err(|_| Error::Busy {
                key: self.name.clone(),
            })?;

        // An atomic update whose server died after its commit point is finished first (it
        // writes refs, never HEAD). Fresh reads under the lock: what the client saw may be
        // old. HEAD and the refs are read beside it, a round trip less on S3 (two at 1,000
        // refs), and the refs once more in the rare case that it wrote any.
        // The idx files of inline packs go up in the same wave (an idx alone is listed by no
        // reader), and HEAD tells that the repository exists.
        let (base, head, refs, started) = tokio::join!(
            self.roll_forward_noting(),
            self.head_file(),
            self.read_current(&req.updates),
            self.start_inline(&req.inline)
        );
        let started = started?;
        let (base, head) = match (base, head) {
            (Ok(base), Ok(head)) => (base, head),
            (Err(e), _) | (_, Err(e)) => {
                self.drop_inline(&req.inline, &started).await;
                return Err(e);
            }
        };
        let ((base, rolled), (head_present, head)) = (base, head);
        // No HEAD: an artifact Hypha switched to git storage may still be a repository.
        if !checked_exists && !head_present && !self.exists().await? {
            self.drop_inline(&req.inline, &started).await;
            return Err(self.not_found());
        }
        let (existing, current) = match if rolled {
            self.read_current(&req.updates).await
        } else {
            refs
        } {
            Ok(read) => read,
            Err(e) => {
                self.drop_inline(&req.inline, &started).await;
                return Err(e);
            }
        };

        let mut results: Vec<Option<RefOutcome>> = vec![None; req.updates.len()];
        let mut writes: Vec<Option<Write>> = vec![None; req.updates.len()];
        let created: BTreeSet<&str> = req
            .updates
            .iter()
            .filter(|u| u.new.is_some())
            .map(|u| u.name.as_str())
            .collect();
        for (i, (update, cur)) in req.updates.iter().zip(&current).enumerate() {
            match plan(update, cur, head.as_deref(), &existing, &created, &missing) {
                Ok(write) => writes[i] = Some(write),
                Err(result) => results[i] = Some(result),
            }
        }

        let failed = |results: &[Option<RefOutcome>]| results.iter().any(Option::is_some);
        if req.atomic && failed(&results) {
            self.drop_inline(&req.inline, &started).await;
            self.release_uploads(&req.packs).await?;
            return Ok(finish_atomic_failure(req, results));
        }
        // The packs become visible now, before any ref needs them (the inline ones written,
        // the uploaded ones unmarked, at once). An update that writes no ref (every one stale
        // or refused: the losers of a race) removes them at once, so that busy repositories
        // do not fill up with them until the grace period ends.
        if writes.iter().any(Option::is_some) {
            let (inline, uploaded) = tokio::join!(
                self.finish_inline(&req.inline, &started),
                self.commit_uploads(&req.packs)
            );
            uploaded?;
            // Pending uploads of an inline pack's name: committed as a named pack is.
            self.commit_uploads(&inline?).await?;
        } else {
            self.drop_inline(&req.inline, &started).await;
            self.release_uploads(&req.packs).await?;
        }
        // Several writes of an atomic update: the commit point is the record ([`journal`]).
        let planned: Vec<super::journal::Planned> = writes
            .iter()
            .zip(&req.updates)
            .zip(&current)
            .filter(|((w, _), _)| w.as_ref().is_some_and(|w| !matches!(w, Write::Nothing)))
            .map(|((_, u), cur)| super::journal::Planned {
                name: u.name.clone(),
                old: cur.oid.clone(),
                new: u.new.clone(),
            })
            .collect();
        let record = if req.atomic && planned.len() > 1 {
            Some(self.commit_record(&base, planned).await?)
        } else {
            None
        };

        // Writes go out concurrently: each ref is its own object, and a push of thousands of
        // tags would otherwise wait for thousands of durable writes one after another.
        let jobs: Vec<(usize, Write)> = writes
            .iter_mut()
            .enumerate()
            .filter_map(|(i, w)| w.take().map(|w| (i, w)))
            .collect();
        let current = &current;
        let applied: Vec<(usize, Result<Option<Undo>, Error>)> = futures_util::stream::iter(jobs)
            .map(|(i, write)| async move {
                (
                    i,
                    self.apply(&req.updates[i].name, write, &current[i]).await,
                )
            })
            .buffer_unordered(REF_CONCURRENCY)
            .collect()
            .await;
        let mut undo: Vec<Undo> = Vec::new();
        let mut lost_race = false;
        let mut failure: Option<Error> = None;
        for (i, outcome) in applied {
            let name = &req.updates[i].name;
            match outcome {
                Ok(done) => {
                    undo.extend(done);
                    results[i] = Some(ok(name));
                }
                Err(e) if e.is_lost_race() => {
                    // Someone outside this lock (Hypha, another server) wrote the ref.
                    let now = self.read_ref(name).await.ok().and_then(|c| c.oid);
                    results[i] = Some(stale(name, now));
                    lost_race = true;
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if req.atomic && (lost_race || failure.is_some()) {
            self.roll_back(undo).await;
            if let Some(record) = &record {
                // Left unfinished, the record would be rolled forward: all refs, not none.
                self.finish_record(record).await?;
            }
            if let Some(e) = failure {
                return Err(e);
            }
            return Ok(finish_atomic_failure(req, results));
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if undo.iter().filter(|u| u.written.is_some()).count() > REF_CONCURRENCY {
            // A mirror push: what a server that starts next would read ref by ref.
            self.refresh_ref_snapshot();
        }
        if let Some(record) = &record {
            // Every ref is written: the update is done whatever happens to the record. One
            // left unfinished is rolled forward (a no-op) by the next locked operation.
            if let Err(e) = self.finish_record(record).await {
                tracing::warn!(
                    "{}: could not mark its update record finished: {e}",
                    self.name
                );
            }
        }

        if let Some(target) = &req.set_head_if_missing {
            let wrote_any = results
                .iter()
                .any(|r| r.as_ref().is_some_and(|r| r.status == RefStatus::Ok));
            if wrote_any || req.updates.is_empty() {
                self.set_head_if_missing(target).await?;
            }
        }

        Ok(UpdateOutcome {
            results: results
                .into_iter()
                .zip(&req.updates)
                .map(|(r, u)| r.unwrap_or_else(|| ok(&u.name)))
                .collect(),
        })
    }

    /// The refs `updates` name, as they are now, and the refs that exist among those git's
    /// file/directory rule needs (see `plan`).
    async fn read_current(
        &self,
        updates: &[RefUpdate],
    ) -> Result<(BTreeSet<String>, Vec<super::refs::Current>), Error> {
        if updates.len() <= super::refs::TOUCHED_MAX {
            // A push of a branch or a few: only what it touches (see there).
            return self.read_touched(updates).await;
        }
        let existing: BTreeSet<String> = self.ref_names().await?.into_iter().collect();
        let current = self
            .read_refs(updates.iter().map(|u| u.name.as_str()), &existing)
            .await?;
        Ok((existing, current))
    }

    /// Write `HEAD` -> `target` only if `HEAD` is missing (first push to a bare artifact).
    async fn set_head_if_missing(&self, target: &str) -> Result<(), Error> {
        match self
            .backend
            .put(
                &self.key("HEAD"),
                Bytes::from(format!("ref: {target}\n")),
                PutMode::IfNoneMatch,
            )
            .await
        {
            Ok(_) | Err(Error::AlreadyExists { .. }) | Err(Error::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Perform one planned write; returns how to undo it. What it writes goes into the
    /// [`ref_cache`](super::ref_cache) under the etag the store answered: the next listing
    /// then reads none of the refs this update wrote (a mirror push of 1,500 refs was 1,500
    /// `GET`s at the next `refs`).
    async fn apply(&self, name: &str, write: Write, cur: &Current) -> Result<Option<Undo>, Error> {
        let key = self.key(name);
        let body = |oid: &str| Bytes::from(format!("{oid}\n"));
        let written = match write {
            Write::Nothing => return Ok(None),
            Write::Create { new } => {
                let etag = self
                    .backend
                    .put(&key, body(&new), PutMode::IfNoneMatch)
                    .await?;
                self.ref_cache.put(&key, &etag, Some(new));
                Some(etag)
            }
            Write::Replace { new, etag } => {
                let etag = self
                    .backend
                    .put(&key, body(&new), PutMode::IfMatch(etag))
                    .await?;
                self.ref_cache.put(&key, &etag, Some(new));
                Some(etag)
            }
            Write::Delete { etag } => {
                self.backend.delete(&key, Some(&etag)).await?;
                None
            }
        };
        Ok(Some(Undo {
            key,
            previous: cur.oid.clone(),
            written,
        }))
    }

    /// Best effort: put back what an atomic update already changed, each step conditional on
    /// the object still being what we wrote.
    async fn roll_back(&self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            let body = |oid: &str| Bytes::from(format!("{oid}\n"));
            // Failures are ignored: someone else changed the ref since, and theirs stands.
            let _ = match (u.previous, u.written) {
                (Some(old), Some(etag)) => self
                    .backend
                    .put(&u.key, body(&old), PutMode::IfMatch(etag))
                    .await
                    .map(drop),
                (None, Some(etag)) => self.backend.delete(&u.key, Some(&etag)).await,
                (Some(old), None) => self
                    .backend
                    .put(&u.key, body(&old), PutMode::IfNoneMatch)
                    .await
                    .map(drop),
                (None, None) => Ok(()),
            };
        }
    }
}

fn validate_updates(req: &Update) -> Result<(), Error> {
    let mut seen = BTreeSet::new();
    for update in &req.updates {
        check_ref(&update.name)?;
        for oid in [&update.old, &update.new].into_iter().flatten() {
            if !names::is_object_id(oid) {
                return Err(Error::Invalid {
                    detail: format!(
                        "{}: invalid object id {:?} (expected 40 lowercase hex)",
                        update.name,
                        crate::storage::shorten(oid)
                    ),
                });
            }
        }
        if !seen.insert(update.name.as_str()) {
            return Err(Error::Invalid {
                detail: format!("{} is updated twice in one request", update.name),
            });
        }
    }
    if let Some(target) = &req.set_head_if_missing {
        check_ref(target)?;
    }
    for name in &req.packs {
        check_pack_name(name)?;
    }
    if let Some(p) = req
        .inline
        .iter()
        .find(|p| req.packs.iter().any(|n| n == p.name()))
    {
        return Err(Error::Invalid {
            detail: format!("{} is both inline and uploaded", p.name()),
        });
    }
    Ok(())
}

/// Decide one update against the current state, or say why not.
fn plan(
    update: &RefUpdate,
    cur: &Current,
    head: Option<&str>,
    existing: &BTreeSet<String>,
    created: &BTreeSet<&str>,
    missing: &BTreeSet<ObjectId>,
) -> Result<Write, RefOutcome> {
    let name = &update.name;
    // First, as in git's receive-pack: nothing else matters for a ref that would dangle.
    if let Some(new) = update.new.as_ref().filter(|_| update.new != update.old) {
        if objects::object_id(new).is_some_and(|id| missing.contains(&id)) {
            return Err(rejected(name, &objects::missing_detail(new)));
        }
    }
    if update.new.is_none() && head == Some(name.as_str()) && cur.oid.is_some() {
        return Err(rejected(name, DENY_DELETE_CURRENT));
    }
    if update.old != cur.oid {
        return Err(stale(name, cur.oid.clone()));
    }
    match (&update.new, &cur.etag) {
        (None, None) => Ok(Write::Nothing),
        (None, Some(etag)) => Ok(Write::Delete { etag: etag.clone() }),
        (Some(new), None) => {
            if let Some(other) = df_conflict(name, existing, created) {
                return Err(rejected(
                    name,
                    &format!("cannot lock ref '{name}': '{other}' exists"),
                ));
            }
            Ok(Write::Create { new: new.clone() })
        }
        // An object that is there but unreadable as a ref counts as absent (`cur.oid` is
        // None), yet it has an etag: replace it conditionally.
        (Some(new), Some(etag)) => Ok(Write::Replace {
            new: new.clone(),
            etag: etag.clone(),
        }),
    }
}

/// `refs/heads/a` and `refs/heads/a/b` cannot both exist (a file cannot be a directory, in
/// git's ref store and on local disk).
fn df_conflict<'a>(
    name: &str,
    existing: &'a BTreeSet<String>,
    created: &BTreeSet<&'a str>,
) -> Option<&'a str> {
    // Ordered-set lookups, not a scan: a push of 10,000 tags checks 10,000 names against
    // 10,000 others. A ref "above" `name` is one of its `/`-prefixes; one "below" sorts right
    // after `name/`.
    let above = name
        .match_indices('/')
        .map(|(i, _)| &name[..i])
        .find_map(|prefix| {
            existing
                .get(prefix)
                .map(String::as_str)
                .or_else(|| created.get(prefix).copied())
        });
    if above.is_some() {
        return above;
    }
    let below = format!("{name}/");
    let from = (
        std::ops::Bound::Included(below.as_str()),
        std::ops::Bound::Unbounded,
    );
    if let Some(other) = existing.range::<str, _>(from).next() {
        if other.starts_with(&below) {
            return Some(other.as_str());
        }
    }
    let first_created: Option<&'a str> = created.range::<str, _>(from).next().copied();
    first_created.filter(|other| other.starts_with(&below))
}

/// After an atomic failure: the refs that failed keep their result, every other ref is
/// rejected, and nothing stays written.
fn finish_atomic_failure(req: &Update, results: Vec<Option<RefOutcome>>) -> UpdateOutcome {
    UpdateOutcome {
        results: results
            .into_iter()
            .zip(&req.updates)
            .map(|(r, u)| match r {
                Some(r) if r.status != RefStatus::Ok => r,
                _ => rejected(&u.name, ATOMIC_FAILED),
            })
            .collect(),
    }
}

fn ok(name: &str) -> RefOutcome {
    RefOutcome {
        name: name.to_owned(),
        status: RefStatus::Ok,
        current: None,
        detail: None,
    }
}

fn stale(name: &str, current: Option<String>) -> RefOutcome {
    RefOutcome {
        name: name.to_owned(),
        status: RefStatus::Stale,
        current,
        detail: None,
    }
}

fn rejected(name: &str, detail: &str) -> RefOutcome {
    RefOutcome {
        name: name.to_owned(),
        status: RefStatus::Rejected,
        current: None,
        detail: Some(detail.to_owned()),
    }
}
