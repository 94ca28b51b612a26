//! Shallow fetches by range reads (`--depth`, `--deepen`, `--unshallow`, and any fetch into a
//! shallow repository): downloads the idx files only, walks the commits from the wanted tips
//! reading commit and tree entries by range (delta chains resolved in memory), builds one
//! local pack of the raw entries the shallow history needs (chains copied whole), verifies and
//! indexes it like any fetched pack, and returns the new shallow boundaries.
//!
//! Which commits count and what the shallow file says are `negotiate::shallow`'s rules; the
//! entry bytes and the pack are `pack::entries`'; HTTP is `client`'s. Does not write the
//! shallow file or refs (the helper does), and never downloads a whole pack.

use crate::api::PackInfo;
use crate::client::{self, Client};
use crate::fetch_packs::Written;
use crate::negotiate::shallow::{self, Deepen, Filter, Walked};
use crate::negotiate::Id;
use crate::pack::{self, entries};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Neighbouring entries closer than this are read in one request (the gap is read too).
const COALESCE_GAP: u64 = 16 << 10;
/// Largest single coalesced range read.
const MAX_READ: u64 = 8 << 20;
/// Bytes read from the start of an entry to learn its object's size (header, and for a delta
/// the start of its zlib stream, whose first inflated bytes hold the sizes).
const SIZE_PREFIX: u64 = 1024;
/// Bytes of stored entries read before they are written out and dropped (a pack build).
const BUILD_BATCH: u64 = 64 << 20;
/// Longest delta chain followed (git's own default is 50; a cycle of REF_DELTAs would
/// otherwise never end).
const MAX_CHAIN: usize = 10_000;
/// Range reads in flight at once.
const PARALLEL_READS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Entries(#[from] entries::Error),
    #[error("object {id} of '{repo}' is not a {expected} as its pack says")]
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
}

/// What the fetch asks of the local repository.
pub trait Local {
    fn has(&self, id: &Id) -> bool;
    /// The content of tree `id`, when the repository has it.
    fn tree(&self, id: &Id) -> Option<Vec<u8>>;
}

/// What git asked for.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The ids of the `fetch` lines.
    pub tips: &'a [Id],
    pub deepen: Deepen,
    /// The repository's current shallow boundaries.
    pub old_shallow: &'a BTreeSet<Id>,
    pub filter: Option<Filter>,
}

/// A shallow fetch's result: the pack it wrote (if any) and the new boundaries.
#[derive(Debug)]
pub struct Fetched {
    pub written: Option<Written>,
    pub shallow: BTreeSet<Id>,
    /// Objects in the pack written, and the bytes read by range.
    pub objects: usize,
    pub bytes_read: u64,
}

/// Fetch the history `want` asks for into the repository at `git_dir`. `packs` is the full
/// listing (with URLs).
pub async fn run(
    client: &Client,
    git_dir: &Path,
    packs: &[PackInfo],
    want: &Want<'_>,
    local: &dyn Local,
) -> Result<Fetched, Error> {
    let Want {
        tips,
        deepen,
        old_shallow,
        filter,
    } = *want;
    let has = |id: &Id| local.has(id);
    let repo_name = client.remote().display_name();
    let mut reader = Reader::open(client, packs).await?;

    // The commit walk, one round of range reads per generation: a commit is (re)visited when
    // reached with more commits left to take than before.
    let mut walked = Walked::default();
    let mut heap: BinaryHeap<(u64, Id, bool)> = BinaryHeap::new();
    heap.extend(deepen.roots(tips, old_shallow));
    let mut commits: Vec<Id> = Vec::new();
    let mut trees: Vec<Id> = Vec::new();
    let mut chosen: Vec<Id> = Vec::new();
    let mut seen_commit: HashSet<Id> = HashSet::new();
    while !heap.is_empty() {
        let mut round: Vec<(u64, Id, bool)> = Vec::new();
        while let Some(item) = heap.pop() {
            let (rem, id, root) = item;
            if walked.rem.get(&id).is_some_and(|&r| r >= rem) {
                continue;
            }
            if deepen.stops_at(has(&id), old_shallow.contains(&id), root) {
                continue;
            }
            round.push(item);
        }
        // Blobs and trees asked for by id (a lazy fetch's `fetch <oid>`) are taken as they
        // are; only commits and tags are read.
        let ids: Vec<Id> = round.iter().map(|(_, id, _)| *id).collect();
        let kinds = reader.kinds(&ids).await?;
        round.retain(|(_, id, _)| match kinds[id] {
            gix::object::Kind::Blob => {
                chosen.push(*id);
                false
            }
            gix::object::Kind::Tree => {
                match filter {
                    Some(Filter::TreeZero) => chosen.push(*id),
                    _ => trees.push(*id),
                }
                false
            }
            _ => true,
        });
        let ids: Vec<Id> = round.iter().map(|(_, id, _)| *id).collect();
        let objects = reader.objects(&ids).await?;
        for (rem, id, _) in round {
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
                    let mut target = [0u8; 20];
                    hex::decode_to_slice(tag.target, &mut target)
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
                    let parents: Vec<Id> = commit
                        .parents()
                        .filter_map(|p| {
                            let mut out = [0u8; 20];
                            p.as_slice().len().eq(&20).then(|| {
                                out.copy_from_slice(p.as_slice());
                                out
                            })
                        })
                        .collect();
                    walked.has_parents.insert(id, !parents.is_empty());
                    walked.rem.insert(id, rem);
                    if seen_commit.insert(id) {
                        commits.push(id);
                        if !has(&id) {
                            chosen.push(id);
                        }
                        if filter != Some(Filter::TreeZero) {
                            let mut tree = [0u8; 20];
                            tree.copy_from_slice(commit.tree().as_slice());
                            trees.push(tree);
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
    let mut seen_tree: HashSet<Id> = HashSet::new();
    let mut level: Vec<Id> = trees.into_iter().filter(|t| seen_tree.insert(*t)).collect();
    let mut seen_blob: HashSet<Id> = HashSet::new();
    let mut limited: Vec<Id> = Vec::new();
    while !level.is_empty() {
        let mut datas: Vec<(Id, Object)> = Vec::new();
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
                let mut child = [0u8; 20];
                child.copy_from_slice(entry.oid.as_bytes());
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

    let shallow = shallow::boundaries(old_shallow, &walked);
    if chosen.is_empty() {
        return Ok(Fetched {
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
    Ok(Fetched {
        written: Written::from_indexed(indexed),
        shallow,
        objects,
        bytes_read: reader.bytes_read,
    })
}

fn unparsable(id: &Id, repo: &str, expected: &'static str) -> Error {
    Error::Unparsable {
        id: hex::encode(id),
        repo: repo.to_owned(),
        expected,
    }
}

/// An object's kind and content, shared between the caches and the walk.
type Object = Arc<(gix::object::Kind, Vec<u8>)>;

/// One entry inside a coalesced read: where it is, and its byte range in the pack.
type Part = (entries::At, u64, u64);

/// One range read: pack, start, end, and the entries it covers.
struct Read {
    pack: usize,
    start: u64,
    end: u64,
    parts: Vec<Part>,
}

/// Entries of the stored packs, read by range and cached for this fetch.
struct Reader<'c> {
    client: &'c Client,
    packs: entries::Packs,
    urls: Vec<String>,
    raw: HashMap<entries::At, Bytes>,
    content: HashMap<entries::At, Object>,
    bytes_read: u64,
}

impl<'c> Reader<'c> {
    /// Download every listed pack's idx (in parallel).
    async fn open(client: &'c Client, listing: &[PackInfo]) -> Result<Reader<'c>, Error> {
        let repo_name = client.remote().display_name();
        let idxs: Vec<Result<(PackInfo, Vec<u8>), Error>> =
            futures_util::stream::iter(listing.iter().cloned())
                .map(|info| {
                    let repo_name = repo_name.clone();
                    async move {
                        let (Some(url), Some(_)) = (info.idx_url.as_deref(), &info.pack_url) else {
                            return Err(Error::NoUrl {
                                pack: info.name.clone(),
                                repo: repo_name,
                            });
                        };
                        let what = format!("index of {} of '{repo_name}'", info.name);
                        let idx =
                            client::get_whole(client, &info.name, client::Object::Idx, url, &what)
                                .await?;
                        Ok((info, idx))
                    }
                })
                .buffered(PARALLEL_READS)
                .collect()
                .await;
        let mut packs = entries::Packs::default();
        let mut urls = Vec::new();
        let mut bytes_read = 0;
        for result in idxs {
            let (info, idx) = result?;
            bytes_read += idx.len() as u64;
            packs.add(&info.name, info.pack_size, &idx)?;
            urls.push(info.pack_url.unwrap_or_default());
        }
        Ok(Reader {
            client,
            packs,
            urls,
            raw: HashMap::new(),
            content: HashMap::new(),
            bytes_read,
        })
    }

    fn locate(&self, id: &Id) -> Result<entries::At, Error> {
        self.packs.locate(id).ok_or_else(|| {
            Error::Entries(entries::Error::Missing {
                id: hex::encode(id),
            })
        })
    }

    /// Read the raw entries at `ats` not yet cached, neighbours coalesced into one request.
    async fn fetch_raw(&mut self, ats: &BTreeSet<entries::At>) -> Result<(), Error> {
        let mut wanted = Vec::new();
        for &at in ats {
            if self.raw.contains_key(&at) {
                continue;
            }
            let range = self
                .packs
                .range(at)
                .ok_or_else(|| Error::Entries(entries::Error::Missing { id: "?".into() }))?;
            wanted.push((at, range));
        }
        let got = self.read_ranges(wanted).await?;
        self.raw.extend(got);
        Ok(())
    }

    /// The first bytes (up to `len`) of each entry of `ats`: enough for its header, and for a
    /// delta the sizes at the start of its data.
    async fn prefixes(
        &mut self,
        ats: &BTreeSet<entries::At>,
        len: u64,
    ) -> Result<HashMap<entries::At, Bytes>, Error> {
        let mut wanted = Vec::new();
        for &at in ats {
            let range = self
                .packs
                .range(at)
                .ok_or_else(|| Error::Entries(entries::Error::Missing { id: "?".into() }))?;
            wanted.push((at, range.start..range.end.min(range.start + len)));
        }
        self.read_ranges(wanted).await
    }

    /// Read `wanted` (sorted by pack and offset), neighbours coalesced into one request.
    async fn read_ranges(
        &mut self,
        wanted: Vec<(entries::At, std::ops::Range<u64>)>,
    ) -> Result<HashMap<entries::At, Bytes>, Error> {
        let mut reads: Vec<Read> = Vec::new();
        for (at, range) in wanted {
            match reads.last_mut() {
                Some(read)
                    if read.pack == at.pack
                        && range.start >= read.end
                        && range.start - read.end <= COALESCE_GAP
                        && range.end - read.start <= MAX_READ =>
                {
                    read.end = range.end;
                    read.parts.push((at, range.start, range.end));
                }
                _ => reads.push(Read {
                    pack: at.pack,
                    start: range.start,
                    end: range.end,
                    parts: vec![(at, range.start, range.end)],
                }),
            }
        }
        let repo_name = self.client.remote().display_name();
        let client = self.client;
        let results: Vec<Result<(Bytes, Read), Error>> = futures_util::stream::iter(reads)
            .map(|read| {
                let Read {
                    pack, start, end, ..
                } = read;
                let mut url = self.urls[pack].clone();
                let name = self.packs.name(pack).to_owned();
                let what = format!("pack {name} of '{repo_name}'");
                async move {
                    let bytes = client::get_range(
                        client,
                        &name,
                        client::Object::Pack,
                        &mut url,
                        (start, end - start),
                        &what,
                    )
                    .await?;
                    Ok((bytes, read))
                }
            })
            .buffer_unordered(PARALLEL_READS)
            .collect()
            .await;
        let mut out = HashMap::new();
        for result in results {
            let (bytes, Read { start, parts, .. }) = result?;
            self.bytes_read += bytes.len() as u64;
            for (at, from, to) in parts {
                out.insert(
                    at,
                    bytes.slice((from - start) as usize..(to - start) as usize),
                );
            }
        }
        Ok(out)
    }

    /// The size of each blob of `ids`, from its entry's first bytes (one small read each,
    /// coalesced): for `blob:limit`.
    async fn blob_sizes(&mut self, ids: &[Id]) -> Result<HashMap<Id, u64>, Error> {
        let ats: Vec<entries::At> = ids
            .iter()
            .map(|id| self.locate(id))
            .collect::<Result<_, _>>()?;
        let prefixes = self
            .prefixes(&ats.iter().copied().collect(), SIZE_PREFIX)
            .await?;
        let mut out = HashMap::new();
        for (id, at) in ids.iter().zip(ats) {
            let prefix = prefixes
                .get(&at)
                .ok_or_else(|| missing_entry(&self.packs, at))?;
            out.insert(*id, self.packs.object_size(at, prefix)?);
        }
        Ok(out)
    }

    /// Make sure every entry of the delta chains under `ats` is cached (one round per link).
    async fn fetch_chains(&mut self, ats: &[entries::At]) -> Result<(), Error> {
        let mut todo: BTreeSet<entries::At> = ats.iter().copied().collect();
        while !todo.is_empty() {
            self.fetch_raw(&todo).await?;
            let mut next = BTreeSet::new();
            for at in todo {
                let mut cur = at;
                // Follow the chain through what is cached; the first uncached base is next.
                for step in 0.. {
                    if step > MAX_CHAIN {
                        return Err(corrupt(&self.packs, cur, "delta chain too long"));
                    }
                    if self.content.contains_key(&cur) {
                        break;
                    }
                    let Some(raw) = self.raw.get(&cur) else {
                        next.insert(cur);
                        break;
                    };
                    match self.packs.parse(cur, raw)?.kind {
                        entries::Kind::Delta(base) => cur = base,
                        entries::Kind::Object(_) => break,
                    }
                }
            }
            todo = next;
        }
        Ok(())
    }

    /// The kind of each of `ids`, from the base of its delta chain (nothing inflated).
    async fn kinds(&mut self, ids: &[Id]) -> Result<HashMap<Id, gix::object::Kind>, Error> {
        let ats: Vec<entries::At> = ids
            .iter()
            .map(|id| self.locate(id))
            .collect::<Result<_, _>>()?;
        self.fetch_chains(&ats).await?;
        let mut out = HashMap::new();
        for (id, at) in ids.iter().zip(ats) {
            let mut cur = at;
            let mut steps = 0;
            let kind = loop {
                steps += 1;
                if steps > MAX_CHAIN {
                    return Err(corrupt(&self.packs, cur, "delta chain too long"));
                }
                if let Some(done) = self.content.get(&cur) {
                    break done.0;
                }
                let raw = self
                    .raw
                    .get(&cur)
                    .ok_or_else(|| missing_entry(&self.packs, cur))?;
                match self.packs.parse(cur, raw)?.kind {
                    entries::Kind::Delta(base) => cur = base,
                    entries::Kind::Object(kind) => break kind,
                }
            };
            out.insert(*id, kind);
        }
        Ok(out)
    }

    /// The kind and content of each of `ids` (commits, trees, tags: small objects).
    async fn objects(&mut self, ids: &[Id]) -> Result<HashMap<Id, Object>, Error> {
        let ats: Vec<entries::At> = ids
            .iter()
            .map(|id| self.locate(id))
            .collect::<Result<_, _>>()?;
        self.fetch_chains(&ats).await?;
        let mut out = HashMap::new();
        for (id, at) in ids.iter().zip(ats) {
            out.insert(*id, self.resolve(at)?);
        }
        Ok(out)
    }

    /// Inflate the entry at `at`, applying its (cached) delta chain.
    fn resolve(&mut self, at: entries::At) -> Result<Object, Error> {
        let mut chain = Vec::new();
        let mut cur = at;
        let base = loop {
            if let Some(done) = self.content.get(&cur) {
                break done.clone();
            }
            let raw = self
                .raw
                .get(&cur)
                .ok_or_else(|| missing_entry(&self.packs, cur))?;
            let parsed = self.packs.parse(cur, raw)?;
            match parsed.kind {
                entries::Kind::Delta(base) => {
                    if chain.len() > MAX_CHAIN {
                        return Err(corrupt(&self.packs, cur, "delta chain too long"));
                    }
                    chain.push((cur, parsed));
                    cur = base;
                }
                entries::Kind::Object(kind) => {
                    let data = self.packs.inflate(cur, raw, &parsed)?;
                    let done = Arc::new((kind, data));
                    self.content.insert(cur, done.clone());
                    break done;
                }
            }
        };
        let mut current = base;
        for (at, parsed) in chain.into_iter().rev() {
            let raw = self
                .raw
                .get(&at)
                .ok_or_else(|| missing_entry(&self.packs, at))?;
            let delta = self.packs.inflate(at, raw, &parsed)?;
            let data = entries::apply_delta(&current.1, &delta)
                .ok_or_else(|| corrupt(&self.packs, at, "delta does not apply to its base"))?;
            let done = Arc::new((current.0, data));
            self.content.insert(at, done.clone());
            current = done;
        }
        Ok(current)
    }

    /// One pack holding the entries of `ids`, each with its delta chain, bases first,
    /// written to `file`. Entries are read in batches of about [`BUILD_BATCH`] bytes and
    /// dropped once written, so memory holds one batch (and the largest entry), not the pack.
    async fn build(&mut self, ids: &[Id], file: std::fs::File) -> Result<std::fs::File, Error> {
        let ats: Vec<entries::At> = ids
            .iter()
            .map(|id| self.locate(id))
            .collect::<Result<_, _>>()?;
        let mut writer = entries::Writer::new(file)?;
        let mut batch: Vec<entries::At> = Vec::new();
        let mut batch_bytes = 0u64;
        for (i, at) in ats.iter().enumerate() {
            batch.push(*at);
            batch_bytes += self.packs.range(*at).map_or(0, |r| r.end - r.start);
            if batch_bytes < BUILD_BATCH && i + 1 < ats.len() {
                continue;
            }
            self.copy_batch(&batch, &mut writer).await?;
            // Commits and trees stay resolved in `content`; raw bytes are not needed again.
            self.raw.clear();
            batch.clear();
            batch_bytes = 0;
        }
        Ok(writer.finish()?)
    }

    /// Read the entries `ats` with their chains (down to what `writer` has) and append them.
    async fn copy_batch(
        &mut self,
        ats: &[entries::At],
        writer: &mut entries::Writer,
    ) -> Result<(), Error> {
        let mut todo: BTreeSet<entries::At> =
            ats.iter().copied().filter(|at| !writer.has(*at)).collect();
        let mut rounds = 0;
        while !todo.is_empty() {
            rounds += 1;
            if rounds > MAX_CHAIN {
                return Err(Error::Entries(entries::Error::Corrupt {
                    pack: self.packs.name(0).to_owned(),
                    offset: 0,
                    why: "delta chain too long".into(),
                }));
            }
            self.fetch_raw(&todo).await?;
            let mut next = BTreeSet::new();
            for at in todo {
                let raw = self
                    .raw
                    .get(&at)
                    .ok_or_else(|| missing_entry(&self.packs, at))?;
                if let entries::Kind::Delta(base) = self.packs.parse(at, raw)?.kind {
                    if !self.raw.contains_key(&base) && !writer.has(base) {
                        next.insert(base);
                    }
                }
            }
            todo = next;
        }
        for &at in ats {
            let mut chain = Vec::new();
            let mut cur = at;
            while !writer.has(cur) {
                let raw = self
                    .raw
                    .get(&cur)
                    .ok_or_else(|| missing_entry(&self.packs, cur))?;
                let parsed = self.packs.parse(cur, raw)?;
                chain.push((cur, parsed));
                match parsed.kind {
                    entries::Kind::Delta(base) if chain.len() <= MAX_CHAIN => cur = base,
                    entries::Kind::Delta(_) => {
                        return Err(corrupt(&self.packs, cur, "delta chain too long"))
                    }
                    entries::Kind::Object(_) => break,
                }
            }
            for (at, parsed) in chain.into_iter().rev() {
                let raw = self
                    .raw
                    .get(&at)
                    .ok_or_else(|| missing_entry(&self.packs, at))?;
                writer.append(at, raw, &parsed)?;
            }
        }
        Ok(())
    }
}

fn missing_entry(packs: &entries::Packs, at: entries::At) -> Error {
    corrupt(packs, at, "entry was not read")
}

fn corrupt(packs: &entries::Packs, at: entries::At, why: &str) -> Error {
    Error::Entries(entries::Error::Corrupt {
        pack: packs.name(at.pack).to_owned(),
        offset: at.offset,
        why: why.into(),
    })
}
