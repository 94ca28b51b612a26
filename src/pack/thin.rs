//! Completing a thin pack: what `git index-pack --fix-thin` does for receive-pack, without
//! ever inflating an object whole (docs/design.md §15).
//!
//! Owns the byte work: walk the thin pack's entries in order (inflating each only to find
//! where its zlib stream ends), check them against the uploaded idx (same offsets, same CRC32s,
//! same count) and the trailer, collect the REF_DELTA bases that are not in the pack, and
//! append each base's stored entry, and the entries of its own delta chain, as raw compressed
//! bytes, rewriting only OFS_DELTA headers for their new offsets. Then the new object count,
//! the new trailer, and the new idx (the uploaded idx's entries plus the copied ones, whose ids
//! come from their source pack's idx). Where bytes come from (stored packs, range reads) is the
//! caller's [`Source`]; where they go is a local file. No network, no storage keys here.
//!
//! A base whose chain is small ([`WHOLE_MAX`]) is appended whole instead, resolved in memory
//! and checked against its id, as index-pack does: readers then index one entry, not a chain.
//! A larger base deep in a chain ([`LONG_CHAIN`]) is appended as the chain's root and one delta
//! composed from the chain ([`super::delta_compose`]): two entries, whatever the depth.
//!
//! Memory: one read buffer (at most [`CHUNK`]), one inflate state and its 64 KiB output scratch, plus
//! per-object records (id, CRC, offset) of the thin pack and of what is copied, and the idx
//! data the [`Source`] keeps for the packs it copies from; a whole object only when its chain
//! inflates to at most [`WHOLE_MAX`], so a 1 GiB base costs what a 1 MiB one does; a composed
//! chain adds its pieces (`delta_compose::MAX_PIECES`), the bytes its deltas insert and one
//! inflated delta (each at most [`COMPOSE_MAX`]). Time: one
//! inflate pass over the thin pack and over each copied entry, one SHA-1 pass over the result.

use super::entries::DeltaError;
use gix::ObjectId;
use gix_pack::data::entry::Header;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;

/// Most bytes fetched per range read. A reader starts at `FIRST_CHUNK` and doubles up to this
/// with every refill: a small base costs one small read, a 1 GiB one about 130 reads, not
/// a thousand (each a store round trip on S3).
pub const CHUNK: usize = 8 << 20;

/// A base whose delta chain inflates to at most this many bytes (every entry's data together)
/// is appended whole, resolved in memory, as `git index-pack --fix-thin` appends bases: the
/// completed pack then holds one entry per base, not its chain. Measured on a one-commit push
/// of the benchmark's 2000-commit history: 72 chain entries appended, and a fetch of that push
/// 36 ms against 25 ms for a pack of whole objects. Larger chains are copied raw, which keeps
/// memory bounded whatever the object size.
const WHOLE_MAX: u64 = 1 << 20;
/// A larger base whose chain holds more entries than this (its root and the deltas on it) is
/// appended as its root's stored entry and one delta composed from the chain
/// ([`super::delta_compose`]), so that `git index-pack` resolves two entries, not the chain:
/// each link costs it a delta application and a SHA-1 of the whole file. Chains grow with
/// edit-pushes of one file, as the compaction reuses deltas (29 edit-pushes of an 8 MiB CSV
/// took 0.23-0.31 s for the first push and 0.87-1.26 s for the 29th). A chain of two is its root and one
/// delta already.
const LONG_CHAIN: usize = 2;
/// Most bytes the deltas of a composed chain may insert (and the largest delta entry read to
/// compose it): the composed delta is held in memory. A chain over it is copied raw.
const COMPOSE_MAX: usize = 8 << 20;
/// How many times its compressed size an uploaded thin entry may inflate to. Deltas and
/// source code stay far below (git's zlib gives 3-10x); zeros and other highly repetitive
/// data go up as a full pack, which the server does not inflate.
const THIN_MAX_RATIO: u64 = 64;
/// The largest entry a thin pack may carry (declared size); a larger object goes up in a full
/// pack.
const THIN_MAX_ENTRY: u64 = 4 << 30;
/// What the refusals above tell the client: the helper falls back to a full pack on it.
pub const THIN_TOO_DENSE: &str = "send a full pack instead";

/// Bytes of a reader's first range read.
const FIRST_CHUNK: usize = 64 << 10;

/// The longest entry header: type and size (10 bytes for a 64-bit size), then a 20-byte
/// REF_DELTA base id or an OFS_DELTA distance of at most 10 bytes.
const MAX_HEADER: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the thin pack is truncated ({what})")]
    Truncated { what: &'static str },
    #[error("the thin pack is corrupt at offset {offset}: {why}")]
    Corrupt { offset: u64, why: String },
    #[error("pack {pack} (stored) is corrupt at offset {offset}: {why}")]
    CorruptBase {
        pack: String,
        offset: u64,
        why: String,
    },
    #[error("the thin pack's trailer does not match its contents (damaged upload)")]
    Checksum,
    #[error("the uploaded idx does not match the thin pack ({why})")]
    IdxMismatch { why: String },
    #[error(transparent)]
    Idx(#[from] super::idx_file::Error),
    /// A base the pack needs that no live pack of the repository holds.
    #[error("missing necessary objects: no pack holds delta base {id}")]
    MissingBase { id: String },
    #[error("cannot read {what}")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the completed pack")]
    Write(#[source] io::Error),
}

/// Where a live pack holds an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// The caller's number for the pack.
    pub pack: usize,
    /// Offset of the object's entry.
    pub offset: u64,
    /// Size of that pack, trailer included.
    pub pack_size: u64,
}

/// The stored bytes a completion reads: the thin pack and the live packs, by range.
pub trait Source {
    /// Bytes `range` of the thin pack (`pack: None`) or of live pack `pack`.
    /// `Bytes`, so that a store's buffer is used as it comes, not copied.
    fn read(&mut self, pack: Option<usize>, range: Range<u64>) -> io::Result<bytes::Bytes>;
    /// Where a live pack holds `id`, from the packs' idx files; `None` when none does.
    fn locate(&mut self, id: &ObjectId) -> io::Result<Option<Located>>;
    /// The id of the entry at `offset` of live pack `pack`, from its idx.
    fn id_at(&mut self, pack: usize, offset: u64) -> io::Result<Option<ObjectId>>;
    /// Where the entry at `offset` of live pack `pack` ends: the next entry's offset, from
    /// its idx, or the trailer's for the last entry (`None`: not known). A copy then reads the
    /// entry in one range read, not in chunks growing from [`FIRST_CHUNK`], each a round trip
    /// to the store.
    fn entry_end(&mut self, _pack: usize, _offset: u64) -> io::Result<Option<u64>> {
        Ok(None)
    }
    /// The name of live pack `pack`, for messages.
    fn name(&self, pack: usize) -> String;
}

/// A completed pack in the caller's file, and its idx.
#[derive(Debug)]
pub struct Completed {
    /// `pack-<trailer hex>`.
    pub name: String,
    pub pack_size: u64,
    /// Empty when no idx of the thin pack was given: the caller indexes the pack.
    pub idx: Vec<u8>,
    /// Entries appended from stored packs (bases and their chains).
    pub appended: usize,
}

/// Complete the thin pack of `thin_size` bytes (with its uploaded idx `thin_idx`) read from
/// `src` into `out` (empty, read-write): the result is self-contained.
///
/// Without `thin_idx` (an inline thin pack from a helper that did not index it: that took a
/// local `index-pack --fix-thin` over the bases, as long as the server's own work) nothing is
/// checked against an idx and [`Completed::idx`] is empty: the caller indexes the completed
/// pack itself, as it checks every stored pack anyway. Every REF_DELTA base is then looked
/// for in the stored packs (a writer's thin pack names only bases it lacks).
pub fn complete(
    src: &mut dyn Source,
    thin_size: u64,
    thin_idx: Option<&[u8]>,
    out: &mut std::fs::File,
) -> Result<Completed, Error> {
    if thin_size < 12 + 20 {
        return Err(Error::Truncated {
            what: "shorter than a pack header and trailer",
        });
    }
    let mut uploaded = match thin_idx {
        Some(idx) => super::idx_file::entries(idx, "the thin pack")?,
        None => Vec::new(),
    };
    let header = src.read(None, 0..12).map_err(read_err("the thin pack"))?;
    let count = parse_header(&header)?;
    if thin_idx.is_some() && count as usize != uploaded.len() {
        return Err(Error::IdxMismatch {
            why: format!("{count} objects in the pack, {} in the idx", uploaded.len()),
        });
    }

    // Pass one: the thin entries, copied verbatim (their offsets stay), each inflated only to
    // find its end.
    // A second handle on the same file (and offset): the buffered writer owns it, and `out` is
    // free again for the count and the trailer once it is flushed.
    let mut w = io::BufWriter::with_capacity(256 << 10, out.try_clone().map_err(Error::Write)?);
    w.write_all(&header).map_err(Error::Write)?;
    let mut trailer_hash = gix_hash::hasher(gix_hash::Kind::Sha1);
    trailer_hash.update(&header);
    let data_end = thin_size - 20;
    let mut reader = Reader::new(None, data_end);
    reader.seek(12);
    let mut walked: Vec<(u64, u32)> = Vec::with_capacity(uploaded.len());
    if thin_idx.is_none() && count as u64 > (data_end - 12) / 2 {
        // Every entry takes at least two bytes (a header and a zlib stream): a count the
        // bytes cannot hold is refused before the walk (no idx bounds it here).
        return Err(thin_corrupt(
            0,
            Failure::Bad("more objects than bytes".into()),
        ));
    }
    let mut ref_bases: Vec<ObjectId> = Vec::new();
    let mut inflate = Inflater::new();
    for _ in 0..count {
        let offset = reader.pos;
        let head = reader
            .header(src)
            .map_err(|why| thin_corrupt(offset, why))?;
        if let Header::RefDelta { base_id } = &head.header {
            ref_bases.push(*base_id);
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head.raw);
        trailer_hash.update(&head.raw);
        w.write_all(&head.raw).map_err(Error::Write)?;
        let mut write_err = None;
        inflate
            .copy_uploaded(&mut reader, src, head.size, &mut |bytes| {
                crc.update(bytes);
                trailer_hash.update(bytes);
                if write_err.is_none() {
                    write_err = w.write_all(bytes).err();
                }
            })
            .map_err(|why| thin_corrupt(offset, why))?;
        if let Some(e) = write_err {
            return Err(Error::Write(e));
        }
        walked.push((offset, crc.finalize()));
    }
    if reader.pos != data_end {
        return Err(thin_corrupt(
            reader.pos,
            Failure::Bad("bytes after the last entry".into()),
        ));
    }
    let trailer = src
        .read(None, data_end..thin_size)
        .map_err(read_err("the thin pack"))?;
    let computed = trailer_hash.try_finalize().map_err(|_| Error::Checksum)?;
    if trailer[..] != *computed.as_slice() {
        return Err(Error::Checksum);
    }
    let mut by_offset: Vec<(u64, u32)> = uploaded.iter().map(|e| (e.offset, e.crc32)).collect();
    by_offset.sort_unstable();
    if thin_idx.is_some() && by_offset != walked {
        return Err(Error::IdxMismatch {
            why: "offsets or CRC32s differ".into(),
        });
    }

    // Pass two: append the missing bases and their chains.
    let mut present: HashMap<ObjectId, u64> = uploaded.iter().map(|e| (e.id, e.offset)).collect();
    if present.len() != uploaded.len() {
        return Err(Error::IdxMismatch {
            why: "an object is listed twice".into(),
        });
    }
    let mut appender = Appender {
        w,
        pos: data_end,
        copied: HashMap::new(),
        added: Vec::new(),
        inflate,
    };
    let mut queue: Vec<ObjectId> = ref_bases;
    let mut seen: HashSet<ObjectId> = HashSet::new();
    while let Some(id) = queue.pop() {
        if present.contains_key(&id) || !seen.insert(id) {
            continue;
        }
        let at = src.locate(&id).map_err(read_err("a pack index"))?;
        let Some(at) = at else {
            return Err(Error::MissingBase { id: id.to_string() });
        };
        appender.copy_chain(src, at, &mut present, &mut queue)?;
    }
    appender.w.flush().map_err(Error::Write)?;
    let (end, added) = (appender.pos, appender.added);

    // The new count, then the trailer over the whole file (one read pass).
    let total = count as usize + added.len();
    let total = u32::try_from(total)
        .map_err(|_| thin_corrupt(0, Failure::Bad("too many objects".into())))?;
    out.seek(SeekFrom::Start(8)).map_err(Error::Write)?;
    out.write_all(&total.to_be_bytes()).map_err(Error::Write)?;
    out.seek(SeekFrom::Start(0)).map_err(Error::Write)?;
    let mut hasher = gix_hash::hasher(gix_hash::Kind::Sha1);
    let mut buf = vec![0u8; 256 << 10];
    let mut left = end;
    while left > 0 {
        let n = (left as usize).min(buf.len());
        out.read_exact(&mut buf[..n]).map_err(Error::Write)?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let checksum = hasher.try_finalize().map_err(|_| Error::Checksum)?;
    let mut checksum_bytes = [0u8; 20];
    checksum_bytes.copy_from_slice(checksum.as_slice());
    out.write_all(&checksum_bytes).map_err(Error::Write)?;
    out.flush().map_err(Error::Write)?;

    let appended = added.len();
    let name = format!("pack-{}", hex::encode(checksum_bytes));
    let idx = match thin_idx {
        Some(_) => {
            uploaded.extend(added);
            super::idx_file::write(&mut uploaded, &checksum_bytes, &name)?
        }
        // The thin entries' ids are unknown here (they take resolving every delta).
        None => Vec::new(),
    };
    Ok(Completed {
        name,
        pack_size: end + 20,
        idx,
        appended,
    })
}

/// Writes appended entries after the thin ones.
struct Appender<W: Write> {
    w: W,
    /// Offset of the next entry in the completed pack.
    pos: u64,
    /// (source pack, source offset) -> offset in the completed pack.
    copied: HashMap<(usize, u64), u64>,
    added: Vec<super::idx_file::Entry>,
    inflate: Inflater,
}

impl<W: Write> Appender<W> {
    /// Append the entry at `at` and, first, the entries its OFS_DELTA chain stands on. A
    /// REF_DELTA in the chain keeps its header; its base joins `queue`.
    fn copy_chain(
        &mut self,
        src: &mut dyn Source,
        at: Located,
        present: &mut HashMap<ObjectId, u64>,
        queue: &mut Vec<ObjectId>,
    ) -> Result<(), Error> {
        let mut reader = Reader::new(Some(at.pack), at.pack_size.saturating_sub(20));
        // Headers only, top down, to learn the chain; then copy bottom up, so every OFS_DELTA
        // base is already written (its distance must point backwards).
        let mut chain: Vec<u64> = Vec::new();
        let mut offset = at.offset;
        let mut inflated_sizes: u64 = 0;
        let mut root: Option<Header> = None;
        let mut root_size: u64 = 0;
        loop {
            if self.copied.contains_key(&(at.pack, offset)) {
                break;
            }
            chain.push(offset);
            reader.seek(offset);
            let head = reader
                .header(src)
                .map_err(|why| base_corrupt(src, at.pack, offset, why))?;
            inflated_sizes = inflated_sizes.saturating_add(head.size);
            match head.header {
                Header::OfsDelta { base_distance } => {
                    // Distance 0 would loop forever; beyond the offset leaves the pack.
                    offset = offset
                        .checked_sub(base_distance)
                        .filter(|_| base_distance > 0)
                        .ok_or_else(|| {
                            base_corrupt(
                                src,
                                at.pack,
                                offset,
                                Failure::Bad("delta base before the pack start".into()),
                            )
                        })?;
                }
                Header::RefDelta { base_id } => {
                    queue.push(base_id);
                    break;
                }
                other => {
                    root = Some(other);
                    root_size = head.size;
                    break;
                }
            }
        }
        // A chain whose result declares more than WHOLE_MAX is not resolved whole.
        let whole = root.filter(|_| chain.len() > 1 && inflated_sizes <= WHOLE_MAX);
        let composed = root.is_some() && chain.len() > LONG_CHAIN;
        if whole.is_some() || composed {
            // Both write the object as one entry (or two): nothing to write if it is there.
            let id = stored_id(src, at.pack, at.offset)?;
            if present.contains_key(&id) {
                return Ok(());
            }
            if let Some(kind) = whole {
                if self.append_whole(src, at, id, &chain, kind, present)? {
                    return Ok(());
                }
            }
            if composed && self.append_composed(src, at, id, &chain, root_size, present)? {
                return Ok(());
            }
        }
        self.copy_entries(src, &mut reader, at.pack, &chain, present)
    }

    /// Copy the entries at `chain` (top down: each an OFS_DELTA on the next, or the last a
    /// whole object or a REF_DELTA) of live pack `pack` as they are, bottom up, rewriting
    /// only OFS_DELTA distances.
    fn copy_entries(
        &mut self,
        src: &mut dyn Source,
        reader: &mut Reader,
        pack: usize,
        chain: &[u64],
        present: &mut HashMap<ObjectId, u64>,
    ) -> Result<(), Error> {
        for &offset in chain.iter().rev() {
            let id = stored_id(src, pack, offset)?;
            if let Some(&new) = present.get(&id) {
                // Already in the completed pack (another chain shared it): point at that copy.
                self.copied.insert((pack, offset), new);
                continue;
            }
            let end = src
                .entry_end(pack, offset)
                .map_err(read_err("a pack index"))?;
            reader.seek_entry(offset, end);
            let head = reader
                .header(src)
                .map_err(|why| base_corrupt(src, pack, offset, why))?;
            let raw = match head.header {
                Header::OfsDelta { base_distance } => {
                    let base = self
                        .copied
                        .get(&(pack, offset - base_distance))
                        .copied()
                        .expect("chain bases are copied before the deltas on them");
                    let mut raw = Vec::with_capacity(MAX_HEADER);
                    Header::OfsDelta {
                        base_distance: self.pos - base,
                    }
                    .write_to(head.size, &mut raw)
                    .map_err(Error::Write)?;
                    raw
                }
                _ => head.raw.clone(),
            };
            let mut crc = crc32fast::Hasher::new();
            crc.update(&raw);
            self.w.write_all(&raw).map_err(Error::Write)?;
            let mut len = raw.len() as u64;
            let mut write_err = None;
            let w = &mut self.w;
            self.inflate
                .copy(reader, src, head.size, &mut |bytes| {
                    crc.update(bytes);
                    len += bytes.len() as u64;
                    if write_err.is_none() {
                        write_err = w.write_all(bytes).err();
                    }
                })
                .map_err(|why| base_corrupt(src, pack, offset, why))?;
            if let Some(e) = write_err {
                return Err(Error::Write(e));
            }
            self.added.push(super::idx_file::Entry {
                id,
                crc32: crc.finalize(),
                offset: self.pos,
            });
            present.insert(id, self.pos);
            self.copied.insert((pack, offset), self.pos);
            self.pos += len;
        }
        Ok(())
    }

    /// Append the object at `at` (`id`, not yet in the completed pack) as its chain's root (`chain`'s last entry, copied as stored,
    /// of `root_size` bytes inflated) and one OFS_DELTA on it composed from the deltas between
    /// them. `false` (nothing written) when the composition passes its bounds
    /// ([`COMPOSE_MAX`], [`super::delta_compose::MAX_PIECES`] and `MAX_VISITS`) or the root is
    /// too large to copy from: the caller copies the chain raw. The composed entry's id is the stored one; the caller's
    /// `git index-pack` of the completed pack checks it, as every entry.
    fn append_composed(
        &mut self,
        src: &mut dyn Source,
        at: Located,
        id: ObjectId,
        chain: &[u64],
        root_size: u64,
        present: &mut HashMap<ObjectId, u64>,
    ) -> Result<bool, Error> {
        let Some((&root, deltas)) = chain.split_last() else {
            return Ok(false);
        };
        let mut reader = Reader::new(Some(at.pack), at.pack_size.saturating_sub(20));
        let Ok(mut composer) = super::delta_compose::Composer::new(root_size, COMPOSE_MAX) else {
            return Ok(false);
        };
        for &offset in deltas.iter().rev() {
            let end = src
                .entry_end(at.pack, offset)
                .map_err(read_err("a pack index"))?;
            reader.seek_entry(offset, end);
            let head = reader
                .header(src)
                .map_err(|why| base_corrupt(src, at.pack, offset, why))?;
            if head.size > COMPOSE_MAX as u64 {
                return Ok(false);
            }
            let delta = self.inflate_entry(src, &mut reader, at.pack, offset, head.size)?;
            match composer.apply(&delta) {
                Ok(()) => {}
                Err(DeltaError::TooLarge { .. }) => return Ok(false),
                Err(DeltaError::Bad) => {
                    return Err(base_corrupt(
                        src,
                        at.pack,
                        offset,
                        Failure::Bad("bad delta".into()),
                    ))
                }
            }
        }
        let delta = composer.encode();
        self.copy_entries(src, &mut reader, at.pack, &[root], present)?;
        let base = self
            .copied
            .get(&(at.pack, root))
            .copied()
            .expect("the root was just copied");
        let header = Header::OfsDelta {
            base_distance: self.pos - base,
        };
        self.append_entry(header, &delta, id, at, present)?;
        Ok(true)
    }

    /// The `size` inflated bytes of the entry at `offset` of live pack `pack`, whose header
    /// `reader` has just read (the callers bound `size`).
    fn inflate_entry(
        &mut self,
        src: &mut dyn Source,
        reader: &mut Reader,
        pack: usize,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        self.inflate
            .copy_into(reader, src, size, &mut |_| {}, Some(&mut out), None)
            .map_err(|why| base_corrupt(src, pack, offset, why))?;
        Ok(out)
    }

    /// Append one entry, `header` and `data` deflated, as object `id` in place of the stored
    /// object at `at`.
    fn append_entry(
        &mut self,
        header: Header,
        data: &[u8],
        id: ObjectId,
        at: Located,
        present: &mut HashMap<ObjectId, u64>,
    ) -> Result<(), Error> {
        let mut raw = Vec::with_capacity(MAX_HEADER);
        header
            .write_to(data.len() as u64, &mut raw)
            .map_err(Error::Write)?;
        let mut z = gix_zlib::stream::deflate::Write::new(raw, gix_zlib::Compression::DEFAULT);
        z.write_all(data)
            .and_then(|()| z.flush())
            .map_err(Error::Write)?;
        let raw = z.into_inner();
        self.w.write_all(&raw).map_err(Error::Write)?;
        self.added.push(super::idx_file::Entry {
            id,
            crc32: crc32fast::hash(&raw),
            offset: self.pos,
        });
        present.insert(id, self.pos);
        self.copied.insert((at.pack, at.offset), self.pos);
        self.pos += raw.len() as u64;
        Ok(())
    }
}

impl<W: Write> Appender<W> {
    /// Append the object at `at` (`id`, not yet in the completed pack) whole: its chain (`chain`, top down, ending at a `kind`
    /// entry) resolved in memory, checked against its id, deflated. One entry where the chain
    /// copy would add `chain.len()`. `false` (nothing written) when a delta of the chain
    /// declares a result above [`WHOLE_MAX`]: memory stays within that bound whatever the
    /// entries claim.
    fn append_whole(
        &mut self,
        src: &mut dyn Source,
        at: Located,
        id: ObjectId,
        chain: &[u64],
        kind: Header,
        present: &mut HashMap<ObjectId, u64>,
    ) -> Result<bool, Error> {
        let mut reader = Reader::new(Some(at.pack), at.pack_size.saturating_sub(20));
        let mut data: Vec<u8> = Vec::new();
        for (i, &offset) in chain.iter().rev().enumerate() {
            reader.seek(offset);
            let head = reader
                .header(src)
                .map_err(|why| base_corrupt(src, at.pack, offset, why))?;
            let inflated = self.inflate_entry(src, &mut reader, at.pack, offset, head.size)?;
            data = if i == 0 {
                inflated
            } else {
                match super::entries::apply_delta(&data, &inflated, WHOLE_MAX) {
                    Ok(data) => data,
                    // Small entries may declare a large result (a big file, a few copies):
                    // not for memory; the caller copies the chain raw.
                    Err(DeltaError::TooLarge { .. }) => return Ok(false),
                    Err(DeltaError::Bad) => {
                        return Err(base_corrupt(
                            src,
                            at.pack,
                            offset,
                            Failure::Bad("bad delta".into()),
                        ))
                    }
                }
            };
        }
        let object_kind = kind.as_kind().ok_or_else(|| {
            base_corrupt(
                src,
                at.pack,
                at.offset,
                Failure::Bad("chain without a root".into()),
            )
        })?;
        let resolved = gix::objs::compute_hash(gix::hash::Kind::Sha1, object_kind, &data)
            .map_err(|_| Error::Checksum)?;
        if resolved != id {
            return Err(base_corrupt(
                src,
                at.pack,
                at.offset,
                Failure::Bad(format!("resolves to {resolved}, not {id}")),
            ));
        }
        self.append_entry(kind, &data, id, at, present)?;
        Ok(true)
    }
}

/// What went wrong inside one entry, before it is known whose entry it is.
#[derive(Debug)]
enum Failure {
    Truncated,
    Bad(String),
    Read(io::Error),
}

fn thin_corrupt(offset: u64, why: Failure) -> Error {
    match why {
        Failure::Truncated => Error::Truncated {
            what: "an entry ends early",
        },
        Failure::Bad(why) => Error::Corrupt { offset, why },
        Failure::Read(source) => Error::Read {
            what: "the thin pack".into(),
            source,
        },
    }
}

fn base_corrupt(src: &dyn Source, pack: usize, offset: u64, why: Failure) -> Error {
    let pack = src.name(pack);
    match why {
        Failure::Truncated => Error::CorruptBase {
            pack,
            offset,
            why: "an entry ends early".into(),
        },
        Failure::Bad(why) => Error::CorruptBase { pack, offset, why },
        Failure::Read(source) => Error::Read { what: pack, source },
    }
}

fn read_err(what: &'static str) -> impl Fn(io::Error) -> Error {
    move |source| Error::Read {
        what: what.into(),
        source,
    }
}

/// The object count of a pack header (`PACK`, version 2 or 3).
fn parse_header(header: &[u8]) -> Result<u32, Error> {
    if header.len() < 12 || &header[..4] != b"PACK" {
        return Err(Error::Corrupt {
            offset: 0,
            why: "not a pack (no PACK signature)".into(),
        });
    }
    let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if version != 2 && version != 3 {
        return Err(Error::Corrupt {
            offset: 4,
            why: format!("unsupported pack version {version}"),
        });
    }
    Ok(u32::from_be_bytes([
        header[8], header[9], header[10], header[11],
    ]))
}

/// An entry header as read: its raw bytes, what it says, and the inflated size it declares.
struct Head {
    raw: Vec<u8>,
    header: Header,
    size: u64,
}

/// Sequential reads of one pack through [`Source::read`], in growing chunks.
struct Reader {
    pack: Option<usize>,
    /// End of the entries (the trailer's offset).
    end: u64,
    buf: bytes::Bytes,
    buf_start: u64,
    pos: u64,
    /// Size of the next range read.
    chunk: usize,
}

impl Reader {
    fn new(pack: Option<usize>, end: u64) -> Reader {
        Reader {
            pack,
            end,
            buf: bytes::Bytes::new(),
            buf_start: 0,
            pos: 0,
            chunk: FIRST_CHUNK,
        }
    }

    /// A jump outside the buffer starts small again: the chunk grows for one long entry read
    /// in sequence, not for the headers of a delta chain read one jump at a time (each would
    /// otherwise fetch up to [`CHUNK`] bytes for a few dozen).
    fn seek(&mut self, pos: u64) {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos > buf_end {
            self.chunk = FIRST_CHUNK;
        }
        self.pos = pos;
    }

    /// [`Reader::seek`] to an entry about to be read whole, which ends at `end` (`None`: not
    /// known, read as before): the next refill takes all of it at once, up to [`CHUNK`] (an
    /// 8 MiB CSV base was 7 reads one after another, growing from [`FIRST_CHUNK`]). Less than
    /// [`FIRST_CHUNK`] is never asked: neighbours often come next.
    fn seek_entry(&mut self, pos: u64, end: Option<u64>) {
        self.seek(pos);
        if let Some(end) = end {
            let len = usize::try_from(end.min(self.end).saturating_sub(pos)).unwrap_or(CHUNK);
            self.chunk = len.clamp(FIRST_CHUNK, CHUNK);
        }
    }

    /// At least `min` buffered bytes from `pos` (fewer only at the end), refilling as needed.
    fn peek(&mut self, src: &mut dyn Source, min: usize) -> Result<&[u8], Failure> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        let have = if self.pos >= self.buf_start && self.pos <= buf_end {
            (buf_end - self.pos) as usize
        } else {
            0
        };
        if have < min && buf_end.max(self.pos) < self.end || have == 0 {
            if self.pos >= self.end {
                return Ok(&[]);
            }
            let len = (self.chunk.max(min) as u64).min(self.end - self.pos);
            self.chunk = (self.chunk * 2).min(CHUNK);
            self.buf = src
                .read(self.pack, self.pos..self.pos + len)
                .map_err(Failure::Read)?;
            if self.buf.len() as u64 != len {
                return Err(Failure::Truncated);
            }
            self.buf_start = self.pos;
        }
        let from = (self.pos - self.buf_start) as usize;
        Ok(&self.buf[from..])
    }

    fn header(&mut self, src: &mut dyn Source) -> Result<Head, Failure> {
        let start = self.pos;
        let bytes = self.peek(src, MAX_HEADER)?;
        if bytes.is_empty() {
            return Err(Failure::Truncated);
        }
        let entry = gix_pack::data::Entry::from_bytes(bytes, start, gix_hash::Kind::Sha1)
            .map_err(|e| Failure::Bad(format!("bad entry header: {e}")))?;
        let len = entry.header_size();
        if len > bytes.len() {
            return Err(Failure::Truncated);
        }
        let raw = bytes[..len].to_vec();
        self.pos += len as u64;
        Ok(Head {
            raw,
            header: entry.header,
            size: entry.decompressed_size,
        })
    }
}

/// Inflates a zlib stream only to find where it ends, handing its compressed bytes on.
struct Inflater {
    zlib: gix_zlib::Decompress,
    scratch: Vec<u8>,
}

impl Inflater {
    fn new() -> Inflater {
        Inflater {
            zlib: gix_zlib::Decompress::new(),
            scratch: vec![0; 64 << 10],
        }
    }

    /// Read the zlib stream at `reader`'s position, which must inflate to exactly `size`
    /// bytes, passing its compressed bytes to `sink`; leaves `reader` after it.
    fn copy(
        &mut self,
        reader: &mut Reader,
        src: &mut dyn Source,
        size: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Failure> {
        self.copy_into(reader, src, size, sink, None, None)
    }

    /// [`Inflater::copy`] for an entry of the uploaded thin pack: one that inflates to more
    /// than [`THIN_MAX_RATIO`] times its compressed bytes is refused as it goes, so an upload
    /// costs the server a bounded multiple of its size in inflating (a 400 KB zlib bomb of
    /// 400 MiB cost ~1000x). Such data still goes up as a full pack (see [`THIN_TOO_DENSE`]).
    fn copy_uploaded(
        &mut self,
        reader: &mut Reader,
        src: &mut dyn Source,
        size: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Failure> {
        if size > THIN_MAX_ENTRY {
            return Err(Failure::Bad(format!(
                "an entry of {size} bytes is larger than a thin pack may carry ({THIN_MAX_ENTRY}); {THIN_TOO_DENSE}"
            )));
        }
        self.copy_into(reader, src, size, sink, None, Some(THIN_MAX_RATIO))
    }

    /// [`Inflater::copy`], and the inflated bytes appended to `inflated` when given.
    fn copy_into(
        &mut self,
        reader: &mut Reader,
        src: &mut dyn Source,
        size: u64,
        sink: &mut dyn FnMut(&[u8]),
        mut inflated: Option<&mut Vec<u8>>,
        max_ratio: Option<u64>,
    ) -> Result<(), Failure> {
        self.zlib.reset();
        loop {
            let input = reader.peek(src, 1)?;
            if input.is_empty() {
                return Err(Failure::Truncated);
            }
            let (in_before, out_before) = (self.zlib.total_in(), self.zlib.total_out());
            let status = self
                .zlib
                .decompress(input, &mut self.scratch, gix_zlib::FlushDecompress::None)
                .map_err(|e| Failure::Bad(format!("bad zlib stream: {e}")))?;
            let used = (self.zlib.total_in() - in_before) as usize;
            let made = self.zlib.total_out() - out_before;
            sink(&input[..used]);
            reader.pos += used as u64;
            if self.zlib.total_out() > size {
                return Err(Failure::Bad("entry inflates past its declared size".into()));
            }
            if let Some(ratio) = max_ratio {
                if self.zlib.total_out() > self.zlib.total_in().saturating_mul(ratio) + (64 << 10) {
                    return Err(Failure::Bad(format!(
                        "an entry inflates more than {ratio} times its size; {THIN_TOO_DENSE}"
                    )));
                }
            }
            if let Some(out) = inflated.as_deref_mut() {
                out.extend_from_slice(&self.scratch[..made as usize]);
            }
            match status {
                gix_zlib::Status::StreamEnd => break,
                _ if used == 0 && made == 0 => {
                    return Err(Failure::Bad("zlib stream makes no progress".into()))
                }
                _ => {}
            }
        }
        if self.zlib.total_out() != size {
            return Err(Failure::Bad(format!(
                "entry inflates to {} bytes, its header says {size}",
                self.zlib.total_out()
            )));
        }
        Ok(())
    }
}

/// The id the idx of live pack `pack` gives the entry at `offset`; an entry it does not list
/// is a corrupt base.
fn stored_id(src: &mut dyn Source, pack: usize, offset: u64) -> Result<ObjectId, Error> {
    src.id_at(pack, offset)
        .map_err(read_err("a pack index"))?
        .ok_or_else(|| base_corrupt(src, pack, offset, Failure::Bad("no idx entry".into())))
}

#[cfg(test)]
mod tests;
