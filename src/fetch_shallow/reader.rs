//! Entries of the stored packs for one shallow or partial fetch: every pack's idx, then entries
//! by range (neighbours coalesced, a few reads in flight), cached raw for the walk, resolved
//! (delta chains applied in memory) for commits and trees, and copied with their chains into
//! the pack the fetch writes. Which entries to read is the walk's (`super`); the bytes of an
//! entry are `pack::entries`'; HTTP is `client`'s.

use super::Error;
use crate::api::PackInfo;
use crate::client::{self, Client};
use crate::pack::entries;
use bytes::Bytes;
use futures_util::StreamExt;
use gix::ObjectId;
use std::collections::{BTreeSet, HashMap};
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
/// The largest commit, tree or tag resolved in memory: a server's delta declaring more is
/// refused before it is built (the largest trees of real monorepos are a few MiB).
const MAX_RESOLVED: u64 = 256 << 20;
/// Range reads in flight at once.
const PARALLEL_READS: usize = 4;

/// An object's kind and content, shared between the caches and the walk.
pub(super) type Object = Arc<(gix::object::Kind, Vec<u8>)>;

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
pub(super) struct Reader<'c> {
    client: &'c Client,
    pub(super) packs: entries::Packs,
    urls: Vec<String>,
    raw: HashMap<entries::At, Bytes>,
    content: HashMap<entries::At, Object>,
    pub(super) bytes_read: u64,
}

impl<'c> Reader<'c> {
    /// Download every listed pack's idx (in parallel).
    pub(super) async fn open(
        client: &'c Client,
        listing: &[PackInfo],
    ) -> Result<Reader<'c>, Error> {
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
                        let idx = client::get_whole(
                            client,
                            &info.name,
                            client::Object::Idx,
                            url,
                            &what,
                            crate::pack::idx_file::max_size(info.pack_size),
                        )
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

    /// Where each of `ids` is, in order; an id no pack holds is an error.
    fn locate_all(&self, ids: &[ObjectId]) -> Result<Vec<entries::At>, Error> {
        ids.iter().map(|id| self.locate(id)).collect()
    }

    fn locate(&self, id: &ObjectId) -> Result<entries::At, Error> {
        self.packs
            .locate(id)
            .ok_or_else(|| Error::Entries(entries::Error::Missing { id: id.to_string() }))
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
    pub(super) async fn blob_sizes(
        &mut self,
        ids: &[ObjectId],
    ) -> Result<HashMap<ObjectId, u64>, Error> {
        let ats = self.locate_all(ids)?;
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
    pub(super) async fn kinds(
        &mut self,
        ids: &[ObjectId],
    ) -> Result<HashMap<ObjectId, gix::object::Kind>, Error> {
        let ats = self.locate_all(ids)?;
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
    pub(super) async fn objects(
        &mut self,
        ids: &[ObjectId],
    ) -> Result<HashMap<ObjectId, Object>, Error> {
        let ats = self.locate_all(ids)?;
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
            let data = match entries::apply_delta(&current.1, &delta, MAX_RESOLVED) {
                Ok(data) => data,
                Err(entries::DeltaError::TooLarge { declared }) => {
                    return Err(corrupt(
                        &self.packs,
                        at,
                        &format!(
                            "a commit, tree or tag of {declared} bytes (more than {MAX_RESOLVED})"
                        ),
                    ))
                }
                Err(entries::DeltaError::Bad) => {
                    return Err(corrupt(&self.packs, at, "delta does not apply to its base"))
                }
            };
            let done = Arc::new((current.0, data));
            self.content.insert(at, done.clone());
            current = done;
        }
        Ok(current)
    }

    /// One pack holding the entries of `ids`, each with its delta chain, bases first,
    /// written to `file`. Entries are read in batches of about [`BUILD_BATCH`] bytes and
    /// dropped once written, so memory holds one batch (and the largest entry), not the pack.
    pub(super) async fn build(
        &mut self,
        ids: &[ObjectId],
        file: std::fs::File,
    ) -> Result<std::fs::File, Error> {
        let ats = self.locate_all(ids)?;
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
