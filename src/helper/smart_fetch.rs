//! `fetch` batches of a session handed to a stock Hypha's smart HTTP ([`super::handoff`]),
//! done by the helper in one upload-pack request (issue 23, docs/design.md §12).
//!
//! Why not git's own fetch-pack: over stateless HTTP it negotiates in rounds (16 haves, then
//! 32, ...), and Hypha 0.21 answers a round without `done` with a pack where fetch-pack
//! expects ACK/NAK (`expected ACK/NAK, got '?PACK'`); nor can Hypha read fetch-pack's gzipped
//! requests (any over 1 KiB: about 20 wants or haves). So a fetch failed as soon as the
//! repository held 16 commits, a clone of a repository with 30 branches failed outright
//! (docs/hypha.md §5). Here the wants, the shallow boundaries, the depth, haves chosen to stop
//! Hypha's walk where our history begins ([`crate::negotiate::haves`]) and `done` go in one
//! POST ([`crate::negotiate::upload_pack`]); the pack goes through `git index-pack` as
//! fetch-pack's would, and `$GIT_DIR/shallow` is rewritten.
//!
//! Where one request is not enough, it is said, not hidden:
//! - a fetch with no haves (a clone, `--refetch`) asks `deepen 2147483647`: Hypha then walks
//!   breadth-first instead of recursing once per commit, so a history past ~950 commits clones
//!   (with haves it must recurse, stopping at them);
//! - when Hypha fails on a request with haves (HTTP 500: more than ~950 new commits in a row),
//!   [`STEP`] commits come through `deepen` and the request with haves goes on from where they
//!   stop, and `-v` says so; after [`MAX_STEPS`] the rest comes whole;
//! - `--shallow-since`, `--shallow-exclude` and `--deepen` fail as fetch-pack fails on a
//!   server without them; `--filter` gets fetch-pack's warning and a full fetch.
//!
//! Writes nothing to stdout: the session replies with the `lock` this returns.

use super::fetch::Options;
use super::protocol::FetchSpec;
use crate::client::{self, Client};
use crate::fetch_packs::Written;
use crate::negotiate::upload_pack::{self, Request, SideBand};
use crate::negotiate::{haves, parse_id, shallow};
use crate::pack;
use crate::progress::Progress;
use futures_util::TryStreamExt;
use gix::ObjectId;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Open(#[from] super::local::OpenError),
    #[error("cannot fetch from '{repo}'")]
    Protocol {
        repo: String,
        #[source]
        source: upload_pack::Error,
    },
    #[error("cannot store the pack fetched from '{repo}'")]
    Index {
        repo: String,
        #[source]
        source: pack::receive::Error,
    },
    /// What fetch-pack says of a server without the capability: Hypha has none of these.
    #[error("the server of '{repo}' does not support {option} (Hypha's smart HTTP)")]
    Unsupported { repo: String, option: &'static str },
    #[error("git asked for '{oid}' ({name}), which is no object id")]
    BadWant { oid: String, name: String },
    #[error("Hypha's upload-pack for '{repo}' sent no object {oid} ({name})")]
    Missing {
        repo: String,
        oid: String,
        name: String,
    },
    #[error("cannot write the shallow file {path}")]
    ShallowFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("indexing task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Fetch what `specs` name into `git_dir`; returns the `.keep` to report as `lock` (none when
/// nothing was missing). On failure the repository is as it was.
pub fn run(
    client: &Client,
    runtime: &tokio::runtime::Runtime,
    git_dir: &Path,
    specs: &[FetchSpec],
    settings: &Options,
    progress: Progress,
) -> Result<Option<PathBuf>, Error> {
    // As `fetch::run`: objects go where git reads them, a linked worktree's too.
    let git_dir = &super::local::common_dir(git_dir);
    let repo_name = client.remote().display_name();
    let unsupported = |option| Error::Unsupported {
        repo: repo_name.clone(),
        option,
    };
    let shape = &settings.shape;
    if shape.deepen_since.is_some() {
        return Err(unsupported("--shallow-since"));
    }
    if !shape.deepen_not.is_empty() {
        return Err(unsupported("--shallow-exclude"));
    }
    if shape.deepen_relative && shape.depth.is_some() {
        return Err(unsupported("--deepen"));
    }
    if shape.filter.is_some() {
        // fetch-pack's own words for a server without `filter`.
        tracing::warn!("warning: filtering not recognized by server, ignoring");
    }
    let deepen = shape.depth.filter(|&d| d > 0);

    let repo = super::local::open(git_dir)?;
    let mut wants: Vec<(ObjectId, &FetchSpec)> = Vec::new();
    for spec in specs {
        let id = parse_id(&spec.oid).ok_or_else(|| Error::BadWant {
            oid: spec.oid.clone(),
            name: spec.name.clone(),
        })?;
        // A deepening fetch asks again for tips it has: their history changes.
        let needed = deepen.is_some() || !repo.has_object(id);
        if needed && !wants.iter().any(|(w, _)| *w == id) {
            wants.push((id, spec));
        }
    }
    if wants.is_empty() {
        return Ok(None);
    }
    let shallow_path = git_dir.join("shallow");
    let old_shallow = std::fs::read_to_string(&shallow_path)
        .map(|t| shallow::parse(&t))
        .unwrap_or_default();
    // Hypha's `deepen` walk takes no haves; a refetch names none.
    let haves = if deepen.is_some() || settings.refetch {
        Vec::new()
    } else {
        haves::choose(&local_tips(&repo), &LocalCommits(&repo), &haves::LIMITS)
    };
    drop(repo);

    let ids: Vec<ObjectId> = wants.iter().map(|(id, _)| *id).collect();
    let mut got = Got::default();
    let plan = Plan {
        wants: &ids,
        shallow: &old_shallow,
        deepen,
        haves: &haves,
        progress,
    };
    let outcome = fetch_chain(client, runtime, git_dir, &plan, &mut got).and_then(|()| {
        let repo = super::local::open(git_dir)?;
        if let Some((id, spec)) = wants.iter().find(|(id, _)| !repo.has_object(*id)) {
            return Err(Error::Missing {
                repo: repo_name.clone(),
                oid: id.to_string(),
                name: spec.name.clone(),
            });
        }
        let told = &got.told;
        if old_shallow.is_empty() && told.shallow.is_empty() && told.unshallow.is_empty() {
            return Ok(());
        }
        let new = shallow::after_fetch(&old_shallow, &told.shallow, &told.unshallow, |id| {
            has_parents(&repo, id)
        });
        if new != old_shallow {
            super::fetch::write_shallow(git_dir, &new).map_err(|source| Error::ShallowFile {
                path: shallow_path.clone(),
                source,
            })?;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        for w in &got.written {
            w.remove();
        }
        return Err(e);
    }
    tracing::info!(
        "hypha: fetched {} objects ({} bytes) from Hypha's upload-pack in {} request{}: {} \
         wants, {} haves{}",
        got.objects,
        got.received,
        got.requests,
        if got.requests == 1 { "" } else { "s" },
        ids.len(),
        haves.len(),
        match (deepen, haves.is_empty()) {
            (Some(shallow::INFINITE), _) | (None, true) => ", whole history".to_owned(),
            (Some(d), _) => format!(", depth {d}"),
            (None, false) => String::new(),
        }
    );
    // git takes one `lock`; the other packs' `.keep` go with their guards, as git writes the
    // refs to their objects right after this batch.
    Ok(got.written.into_iter().next().map(Written::hand_to_git))
}

/// Commits one chained request takes when Hypha cannot walk the new history in one go: below
/// its recursion limit (about 950 commits in a row), so the request after it, with haves
/// again, can end the walk at our history without over-reaching into it.
const STEP: u64 = 900;

/// Chained requests at most before the rest is fetched whole (58 000 commits).
const MAX_STEPS: usize = 64;

/// What a batch asks for.
struct Plan<'a> {
    wants: &'a [ObjectId],
    shallow: &'a std::collections::BTreeSet<ObjectId>,
    /// The user's `--depth` (`--unshallow`: [`shallow::INFINITE`]).
    deepen: Option<u64>,
    haves: &'a [ObjectId],
    progress: Progress,
}

/// What the requests of a batch brought so far.
#[derive(Default)]
struct Got {
    written: Vec<Written>,
    /// The shallow section of the answer to what the user asked (not of chained steps).
    told: upload_pack::Preamble,
    objects: u64,
    received: u64,
    requests: usize,
}

impl Got {
    fn add(&mut self, fetched: Fetched, told: bool) -> upload_pack::Preamble {
        self.written.extend(fetched.written);
        self.objects += u64::from(fetched.objects);
        self.received += fetched.received;
        self.requests += 1;
        if told {
            self.told = fetched.preamble;
            return upload_pack::Preamble::default();
        }
        fetched.preamble
    }
}

/// One request with the haves; where Hypha fails on it (HTTP 500: the new history is too long
/// for its recursive walk), [`STEP`] commits of it through `deepen` (a walk without recursion
/// that takes no haves), then the request with the haves again from where that stopped.
fn fetch_chain(
    client: &Client,
    runtime: &tokio::runtime::Runtime,
    git_dir: &Path,
    plan: &Plan<'_>,
    got: &mut Got,
) -> Result<(), Error> {
    // With nothing to stop at, the walk without a recursion limit.
    let whole = plan.deepen.is_none() && plan.haves.is_empty();
    let mut wants = plan.wants.to_vec();
    let mut steps = 0;
    loop {
        let request = Request {
            wants: &wants,
            shallow: plan.shallow,
            deepen: if whole {
                Some(shallow::INFINITE)
            } else {
                plan.deepen
            },
            haves: plan.haves,
            progress: plan.progress.is_requested(),
        };
        let failed = match fetch(client, runtime, git_dir, &request, plan.progress) {
            Ok(fetched) => {
                got.add(fetched, true);
                return Ok(());
            }
            Err(Error::Client(client::Error::ServerFailed { what })) => what,
            Err(e) => return Err(e),
        };
        got.requests += 1;
        if request.deepen.is_some() {
            return Err(client::Error::ServerFailed { what: failed }.into());
        }
        let depth = if steps < MAX_STEPS {
            STEP
        } else {
            shallow::INFINITE
        };
        if steps == 0 || depth == shallow::INFINITE {
            tracing::info!(
                "hypha: Hypha's upload-pack cannot walk this much new history of {} at once \
                 (HTTP 500: it recurses once per commit, up to about 950); fetching {}",
                client.remote().display_name(),
                if depth == shallow::INFINITE {
                    "the rest of it whole".to_owned()
                } else {
                    format!("{STEP} commits at a time")
                }
            );
        }
        steps += 1;
        let step = Request {
            deepen: Some(depth),
            haves: &[],
            ..request
        };
        let fetched = fetch(client, runtime, git_dir, &step, plan.progress)?;
        let boundaries = got.add(fetched, false).shallow;
        // Where the step stopped: the parents of its boundaries that are still missing.
        let repo = super::local::open(git_dir)?;
        wants = missing_parents(&repo, &boundaries);
        if wants.is_empty() {
            return Ok(());
        }
    }
}

/// The parents of `commits` the repository does not have, each once.
fn missing_parents(repo: &gix::Repository, commits: &[ObjectId]) -> Vec<ObjectId> {
    let mut out: Vec<ObjectId> = Vec::new();
    for id in commits {
        let Ok(object) = repo.find_object(*id) else {
            continue;
        };
        let Ok(commit) = gix::objs::CommitRef::from_bytes(&object.data, gix::hash::Kind::Sha1)
        else {
            continue;
        };
        for parent in parent_ids(&commit) {
            if !repo.has_object(parent) && !out.contains(&parent) {
                out.push(parent);
            }
        }
    }
    out
}

/// What one request brought.
struct Fetched {
    preamble: upload_pack::Preamble,
    /// The new pack (none when the server had nothing to send).
    written: Option<Written>,
    objects: u32,
    /// Bytes of the answer, as received.
    received: u64,
}

/// Send `request`, read the answer's preamble and index its pack into `git_dir`.
fn fetch(
    client: &Client,
    runtime: &tokio::runtime::Runtime,
    git_dir: &Path,
    request: &Request<'_>,
    progress: Progress,
) -> Result<Fetched, Error> {
    let repo = client.remote().display_name();
    let body = request.encode(concat!("git-remote-hypha/", env!("CARGO_PKG_VERSION")));
    tracing::debug!(
        "hypha: upload-pack request of {} bytes ({} wants, {} haves)",
        body.len(),
        request.wants.len(),
        request.haves.len()
    );
    let pack_dir = git_dir.join("objects").join("pack");
    runtime.block_on(async {
        let answer = client.upload_pack(body).await?;
        let bar = progress.bytes("Receiving objects", answer.length.unwrap_or(0));
        let counted = bar.clone();
        let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = received.clone();
        let known_length = answer.length.is_some();
        let stream = answer.body.inspect_ok(move |chunk| {
            let n = chunk.len() as u64;
            count.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            if !known_length {
                counted.add_total(n);
            }
            counted.inc(n);
        });
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let repo_name = repo.clone();
        let read = tokio::task::spawn_blocking(move || read_answer(reader, &pack_dir, &repo_name));
        let result = read.await?;
        bar.finish();
        let (preamble, indexed) = result?;
        let objects = indexed.as_ref().map_or(0, |i| i.objects);
        Ok(Fetched {
            preamble,
            written: indexed.and_then(Written::from_indexed),
            objects,
            received: received.load(std::sync::atomic::Ordering::Relaxed),
        })
    })
}

/// The blocking half: preamble, then the pack out of the side-band into `git index-pack`.
fn read_answer(
    input: impl Read,
    pack_dir: &Path,
    repo: &str,
) -> Result<(upload_pack::Preamble, Option<pack::Indexed>), Error> {
    let protocol = |source| Error::Protocol {
        repo: repo.to_owned(),
        source,
    };
    let mut input = std::io::BufReader::with_capacity(1 << 16, input);
    let preamble = upload_pack::read_preamble(&mut input).map_err(protocol)?;
    let mut pack = SideBand::new(input, |said: &[u8]| {
        let text = String::from_utf8_lossy(said);
        for line in text.split(['\r', '\n']).filter(|l| !l.trim().is_empty()) {
            tracing::info!("remote: {line}");
        }
    });
    // An empty pack (nothing to send) has a header and a trailer and no objects: nothing to
    // index. The header's count says so.
    let mut header = [0u8; 12];
    if let Err(e) = pack.read_exact(&mut header) {
        return Err(protocol(io_or_protocol(e)));
    }
    if &header[..4] != b"PACK" {
        return Err(protocol(upload_pack::Error::Malformed(
            "the pack does not start with PACK".into(),
        )));
    }
    if header[8..12] == [0, 0, 0, 0] {
        std::io::copy(&mut pack, &mut std::io::sink()).map_err(|e| protocol(io_or_protocol(e)))?;
        return Ok((preamble, None));
    }
    let mut whole = std::io::BufReader::with_capacity(1 << 20, (&header[..]).chain(pack));
    let indexed =
        pack::receive_git::index(&mut whole, pack_dir, "the fetched pack").map_err(|source| {
            Error::Index {
                repo: repo.to_owned(),
                source,
            }
        })?;
    Ok((preamble, Some(indexed)))
}

/// An error from inside the side-band reader: the protocol error it carries, else the I/O.
fn io_or_protocol(e: std::io::Error) -> upload_pack::Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return upload_pack::Error::Truncated;
    }
    match e.into_inner() {
        Some(inner) => match inner.downcast::<upload_pack::Error>() {
            Ok(protocol) => *protocol,
            Err(other) => upload_pack::Error::Io(std::io::Error::other(other)),
        },
        None => upload_pack::Error::Truncated,
    }
}

/// Every commit a local ref (or a detached HEAD) points at, annotated tags peeled.
fn local_tips(repo: &gix::Repository) -> Vec<ObjectId> {
    let mut tips = Vec::new();
    let mut add = |id: ObjectId| tips.push(id);
    if let Ok(id) = repo.head_id() {
        add(id.detach());
    }
    if let Ok(platform) = repo.references() {
        if let Ok(all) = platform.all() {
            for mut reference in all.flatten() {
                if let Ok(id) = reference.peel_to_id() {
                    add(id.detach());
                }
            }
        }
    }
    tips
}

/// The local repository as the have walk reads it.
struct LocalCommits<'r>(&'r gix::Repository);

impl haves::Commits for LocalCommits<'_> {
    fn commit(&self, id: &ObjectId) -> Option<(Vec<ObjectId>, i64)> {
        let oid = *id;
        // The header first: a blob or tree is not inflated to learn its kind.
        if self.0.find_header(oid).ok()?.kind() != gix::object::Kind::Commit {
            return None;
        }
        let object = self.0.find_object(oid).ok()?;
        let commit = gix::objs::CommitRef::from_bytes(&object.data, gix::hash::Kind::Sha1).ok()?;
        let time = commit.time().ok()?.seconds;
        Some((parent_ids(&commit), time))
    }
}

fn parent_ids(commit: &gix::objs::CommitRef<'_>) -> Vec<ObjectId> {
    commit.parents().collect()
}

/// Whether the repository holds commit `id` and every one of its parents.
fn has_parents(repo: &gix::Repository, id: &ObjectId) -> bool {
    let Ok(object) = repo.find_object(*id) else {
        return false;
    };
    let Ok(commit) = gix::objs::CommitRef::from_bytes(&object.data, gix::hash::Kind::Sha1) else {
        return false;
    };
    parent_ids(&commit).iter().all(|p| repo.has_object(*p))
}
