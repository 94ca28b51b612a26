//! Shallow and partial fetches by range reads (`--depth`, `--deepen`, `--unshallow`,
//! `--shallow-since`, `--shallow-exclude`, any fetch into a shallow repository, `--filter`,
//! and git's lazy fetches): the walk. From the wanted ids it walks commits (by generation) and
//! trees (by level), decides which objects the repository lacks and the filter allows, has
//! [`reader`] copy their entries into one local pack, verifies and indexes it like any fetched
//! pack, and returns the new shallow boundaries.
//!
//! Which commits count and what the shallow file says are `negotiate::shallow`'s rules; reads
//! and the pack are [`reader`]'s; commits the repository has are read locally ([`commits`]).
//! Does not write the shallow file, the `.promisor` file or refs (the helper does), and never
//! downloads a whole pack.

use crate::api::PackInfo;
use crate::client::{self, Client};
use crate::fetch_packs::Written;
use crate::negotiate::shallow::{self, Cut, Deepen, Filter, Walked};
use crate::pack::{self, entries};
use gix::ObjectId;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

mod commits;
mod reader;
use reader::{Object, Reader};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Entries(#[from] entries::Error),
    #[error("object {id} of '{repo}' does not parse as the {expected} its pack says it is")]
    Unparsable {
        id: String,
        repo: String,
        expected: &'static str,
    },
    #[error("pack {pack} of '{repo}' has no download URL")]
    NoUrl { pack: String, repo: String },
    #[error("the shallow pack built from '{repo}' could not be stored")]
    Index {
        repo: String,
        #[source]
        source: pack::receive::Error,
    },
    #[error("indexing task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error(
        "no commits of '{repo}' selected for shallow requests: every wanted commit is older \
         than --shallow-since or reachable from --shallow-exclude"
    )]
    NothingSelected { repo: String },
}

/// What the fetch asks of the local repository.
pub trait Local {
    fn has(&self, id: &ObjectId) -> bool;
    /// The content of tree `id`, when the repository has it.
    fn tree(&self, id: &ObjectId) -> Option<Vec<u8>>;
    /// The content of commit `id`, when the repository has it.
    fn commit(&self, id: &ObjectId) -> Option<Vec<u8>>;
}

/// `--shallow-since` and `--shallow-exclude` as the helper resolved them: the date in unix
/// seconds (git's approxidate), the excluded refs' ids.
#[derive(Debug, Clone, Default)]
pub struct CutRequest {
    pub since: Option<i64>,
    pub exclude: Vec<ObjectId>,
}

/// How far and how wide to fetch: what the helper made of git's options.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    pub deepen: Deepen,
    /// The repository's current shallow boundaries.
    pub old_shallow: &'a BTreeSet<ObjectId>,
    pub filter: Option<Filter>,
    /// With [`Deepen::Cut`]: what to cut.
    pub cut: Option<&'a CutRequest>,
}

/// What a shallow fetch did: the pack it wrote (if any) and the new boundaries.
#[derive(Debug)]
pub struct Outcome {
    pub written: Option<Written>,
    pub shallow: BTreeSet<ObjectId>,
    /// Objects in the pack written, and the bytes read by range.
    pub objects: usize,
    pub bytes_read: u64,
}

/// Fetch the history of `tips` (the ids of git's `fetch` lines) that `options` ask for into
/// the repository at `git_dir`. `packs` is the full listing (with URLs).
pub async fn run(
    client: &Client,
    git_dir: &Path,
    packs: &[PackInfo],
    tips: &[ObjectId],
    options: &Options<'_>,
    local: &dyn Local,
) -> Result<Outcome, Error> {
    let Options {
        deepen,
        old_shallow,
        filter,
        cut,
    } = *options;
    let has = |id: &ObjectId| local.has(id);
    let repo_name = client.remote().display_name();
    let mut reader = Reader::open(client, packs).await?;
    // `--shallow-exclude`: the excluded history is read first (commits only), as upload-pack's
    // rev-list marks it uninteresting before it walks the wants.
    let cut: Option<Cut> = match cut {
        Some(request) => Some(Cut {
            since: request.since,
            excluded: commits::reachable(&mut reader, local, &request.exclude, &repo_name).await?,
        }),
        None => None,
    };
    // Commits a cut did not take (never walked again), and those it took with their parents.
    let mut rejected: HashSet<ObjectId> = HashSet::new();
    let mut taken: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();

    // The commit walk, one round of range reads per generation: a commit is (re)visited when
    // reached with more commits left to take than before.
    let mut walked = Walked::default();
    let mut heap: BinaryHeap<(u64, ObjectId, bool)> = BinaryHeap::new();
    heap.extend(deepen.roots(tips, old_shallow));
    let mut commits: Vec<ObjectId> = Vec::new();
    let mut trees: Vec<ObjectId> = Vec::new();
    let mut chosen: Vec<ObjectId> = Vec::new();
    let mut seen_commit: HashSet<ObjectId> = HashSet::new();
    while !heap.is_empty() {
        let mut round: Vec<(u64, ObjectId, bool)> = Vec::new();
        while let Some(item) = heap.pop() {
            let (rem, id, root) = item;
            if walked.rem.get(&id).is_some_and(|&r| r >= rem) || rejected.contains(&id) {
                continue;
            }
            if deepen.stops_at(has(&id), old_shallow.contains(&id), root) {
                continue;
            }
            round.push(item);
        }
        // Blobs and trees asked for by id (a lazy fetch's `fetch <oid>`) are taken as they
        // are; only commits and tags are read.
        let ids: Vec<ObjectId> = round.iter().map(|(_, id, _)| *id).collect();
        let (objects, others) = commits::read(&mut reader, local, &ids).await?;
        for (id, kind) in others {
            match (kind, filter) {
                (gix::object::Kind::Tree, Some(Filter::TreeZero)) => chosen.push(id),
                (gix::object::Kind::Tree, _) => trees.push(id),
                _ => chosen.push(id),
            }
        }
        round.retain(|(_, id, _)| objects.contains_key(id));
        for (rem, id, _) in round {
            if rejected.contains(&id) {
                continue;
            }
            if walked.rem.get(&id).is_some_and(|&r| r >= rem) {
                continue;
            }
            let (kind, data) = &*objects[&id];
            match kind {
                gix::object::Kind::Tag => {
                    let tag = gix::objs::TagRef::from_bytes(data, gix::hash::Kind::Sha1)
                        .map_err(|_| unparsable(&id, &repo_name, "tag"))?;
                    if !has(&id) {
                        chosen.push(id);
                    }
                    let target = ObjectId::from_hex(tag.target)
                        .map_err(|_| unparsable(&id, &repo_name, "tag"))?;
                    if tag.target_kind == gix::object::Kind::Commit
                        || tag.target_kind == gix::object::Kind::Tag
                    {
                        heap.push((rem, target, false));
                    } else if !has(&target) {
                        // A tag of a tree or blob: that object, whole.
                        if tag.target_kind == gix::object::Kind::Tree {
                            trees.push(target);
                        } else {
                            chosen.push(target);
                        }
                    }
                    walked.rem.insert(id, u64::MAX);
                }
                gix::object::Kind::Commit => {
                    let commit = gix::objs::CommitRef::from_bytes(data, gix::hash::Kind::Sha1)
                        .map_err(|_| unparsable(&id, &repo_name, "commit"))?;
                    let parents = commits::parents(&commit);
                    if let Some(cut) = &cut {
                        let time = commit
                            .time()
                            .map_err(|_| unparsable(&id, &repo_name, "commit"))?
                            .seconds;
                        if !cut.takes(&id, time) {
                            rejected.insert(id);
                            continue;
                        }
                        taken.insert(id, parents.clone());
                    }
                    walked.has_parents.insert(id, !parents.is_empty());
                    walked.rem.insert(id, rem);
                    if seen_commit.insert(id) {
                        commits.push(id);
                        if !has(&id) {
                            chosen.push(id);
                        }
                        if filter != Some(Filter::TreeZero) {
                            trees.push(commit.tree());
                        }
                    }
                    if rem > 1 {
                        for p in parents {
                            heap.push((rem - 1, p, false));
                        }
                    }
                }
                _ => return Err(unparsable(&id, &repo_name, "commit")),
            }
        }
    }

    // The trees of the commits taken, level by level; blobs by id only. A tree the
    // repository has is still walked (read locally): it may be a delta base an earlier shallow
    // fetch copied, whose blobs never came.
    let mut seen_tree: HashSet<ObjectId> = HashSet::new();
    let mut level: Vec<ObjectId> = trees.into_iter().filter(|t| seen_tree.insert(*t)).collect();
    let mut seen_blob: HashSet<ObjectId> = HashSet::new();
    let mut limited: Vec<ObjectId> = Vec::new();
    while !level.is_empty() {
        let mut datas: Vec<(ObjectId, Object)> = Vec::new();
        let mut remote = Vec::new();
        for id in &level {
            match local.tree(id) {
                Some(data) => datas.push((*id, Arc::new((gix::object::Kind::Tree, data)))),
                None => remote.push(*id),
            }
        }
        let objects = reader.objects(&remote).await?;
        chosen.extend(remote.iter().copied());
        datas.extend(objects);
        let mut next = Vec::new();
        for (id, object) in &datas {
            let tree = gix::objs::TreeRef::from_bytes(&object.1, gix::hash::Kind::Sha1)
                .map_err(|_| unparsable(id, &repo_name, "tree"))?;
            for entry in tree.entries {
                if entry.mode.is_commit() {
                    continue;
                }
                let child = entry.oid.to_owned();
                if entry.mode.is_tree() {
                    if seen_tree.insert(child) {
                        next.push(child);
                    }
                } else if !has(&child) && seen_blob.insert(child) {
                    match filter {
                        None => chosen.push(child),
                        Some(Filter::BlobLimit(_)) => limited.push(child),
                        Some(_) => {}
                    }
                }
            }
        }
        level = next;
    }

    // blob:limit=<n> takes the blobs smaller than n, as git's filter does.
    if let Some(Filter::BlobLimit(limit)) = filter {
        let sizes = reader.blob_sizes(&limited).await?;
        chosen.extend(
            limited
                .iter()
                .filter(|id| sizes.get(*id).is_some_and(|&s| s < limit)),
        );
    }

    let shallow = match cut {
        None => shallow::boundaries(old_shallow, &walked),
        Some(_) => shallow::cut_boundaries(old_shallow, &taken).ok_or(Error::NothingSelected {
            repo: repo_name.clone(),
        })?,
    };
    if chosen.is_empty() {
        return Ok(Outcome {
            written: None,
            shallow,
            objects: 0,
            bytes_read: reader.bytes_read,
        });
    }
    let pack_dir = git_dir.join("objects").join("pack");
    // An unnamed file in the repository: gone with the process, whatever happens.
    let file =
        tempfile::tempfile_in(&pack_dir).map_err(|e| Error::Entries(entries::Error::Write(e)))?;
    // The indexer's choice (gix, or git index-pack for huge entries) as for whole packs.
    let largest_entry = chosen
        .iter()
        .filter_map(|id| {
            reader
                .packs
                .locate(id)
                .and_then(|at| reader.packs.range(at))
        })
        .map(|r| r.end - r.start)
        .max()
        .unwrap_or(0);
    let file = reader.build(&chosen, file).await?;
    let objects = chosen.len();
    let name = format!("shallow pack of '{repo_name}'");
    let indexed = tokio::task::spawn_blocking(move || {
        let interrupt = AtomicBool::new(false);
        let mut input = std::io::BufReader::with_capacity(1 << 20, file);
        pack::receive_stream(&mut input, &pack_dir, &name, largest_entry, &interrupt)
    })
    .await?
    .map_err(|source| Error::Index {
        repo: repo_name.clone(),
        source,
    })?;
    tracing::info!(
        "hypha: shallow fetch of {} commits ({objects} objects, {} bytes by range) from {repo_name}",
        commits.len(),
        reader.bytes_read
    );
    Ok(Outcome {
        written: Written::from_indexed(indexed),
        shallow,
        objects,
        bytes_read: reader.bytes_read,
    })
}

fn unparsable(id: &ObjectId, repo: &str, expected: &'static str) -> Error {
    Error::Unparsable {
        id: id.to_string(),
        repo: repo.to_owned(),
        expected,
    }
}
