//! Single entries of stored packs, read by range: where an object's entry lies (from the
//! packs' idx files alone), what its header says, its content (inflated, deltas applied:
//! for the commits and trees a shallow walk reads), and a new pack made of raw entries copied
//! whole with their delta chains (OFS_DELTA headers rewritten for their new offsets).
//!
//! Pure bytes: no network, no files. Which entries to read and to copy is the caller's
//! (`fetch_shallow`); the bytes come from it too. Thin-pack completion (`thin`) streams its
//! entries instead, because it never knows where a thin entry ends before inflating it; here
//! the idx gives every entry's end (the next entry's offset), so a range read fetches exactly
//! one entry.

use gix::ObjectId;
use gix_pack::data::entry::Header;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Idx(#[from] super::idx_file::Error),
    #[error("pack {pack} is corrupt at offset {offset}: {why}")]
    Corrupt {
        pack: String,
        offset: u64,
        why: String,
    },
    #[error("object {id} is in no pack of the remote")]
    Missing { id: String },
    #[error("pack being built holds too many objects")]
    TooMany,
    #[error("cannot write the pack being built")]
    Write(#[source] std::io::Error),
}

/// The stored packs as their idx files describe them.
#[derive(Debug, Default)]
pub struct Packs {
    names: Vec<String>,
    /// Per pack: entry offsets, sorted, then the trailer's offset (the last entry's end).
    ends: Vec<Vec<u64>>,
    by_id: HashMap<ObjectId, (usize, u64)>,
    by_offset: HashMap<(usize, u64), ObjectId>,
}

/// Where one entry lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct At {
    pub pack: usize,
    pub offset: u64,
}

impl Packs {
    /// Add a pack of `pack_size` bytes with its idx; returns its number.
    pub fn add(&mut self, name: &str, pack_size: u64, idx: &[u8]) -> Result<usize, Error> {
        let entries = super::idx_file::entries(idx, name)?;
        let n = self.names.len();
        let mut offsets: Vec<u64> = entries.iter().map(|e| e.offset).collect();
        offsets.sort_unstable();
        let trailer = pack_size.saturating_sub(20);
        // (`offsets.first() < Some(&12)` held for an idx of no objects too: `None < Some`.)
        if offsets.last().is_some_and(|&last| last >= trailer)
            || offsets.first().is_some_and(|&first| first < 12)
        {
            return Err(Error::Corrupt {
                pack: name.to_owned(),
                offset: offsets.last().copied().unwrap_or(0),
                why: "its idx names offsets outside the pack".into(),
            });
        }
        offsets.push(trailer);
        for e in entries {
            // The first pack listed wins: any copy of an object is as good as another.
            self.by_id.entry(e.id).or_insert((n, e.offset));
            self.by_offset.insert((n, e.offset), e.id);
        }
        self.names.push(name.to_owned());
        self.ends.push(offsets);
        Ok(n)
    }

    pub fn name(&self, pack: usize) -> &str {
        self.names.get(pack).map_or("?", String::as_str)
    }

    pub fn locate(&self, id: &ObjectId) -> Option<At> {
        self.by_id
            .get(id)
            .map(|&(pack, offset)| At { pack, offset })
    }

    pub fn id_at(&self, at: At) -> Option<ObjectId> {
        self.by_offset.get(&(at.pack, at.offset)).copied()
    }

    /// The bytes of the entry at `at`: up to the next entry (or the trailer).
    pub fn range(&self, at: At) -> Option<Range<u64>> {
        let ends = self.ends.get(at.pack)?;
        let i = ends.binary_search(&at.offset).ok()?;
        Some(at.offset..*ends.get(i + 1)?)
    }

    fn corrupt(&self, at: At, why: impl Into<String>) -> Error {
        Error::Corrupt {
            pack: self.name(at.pack).to_owned(),
            offset: at.offset,
            why: why.into(),
        }
    }

    /// What the raw entry at `at` says: its kind, or the base it is a delta on.
    pub fn parse(&self, at: At, raw: &[u8]) -> Result<Parsed, Error> {
        let entry = gix_pack::data::Entry::from_bytes(raw, at.offset, gix_hash::Kind::Sha1)
            .map_err(|e| self.corrupt(at, format!("bad entry header: {e}")))?;
        let header_len = entry.header_size();
        if header_len > raw.len() {
            return Err(self.corrupt(at, "entry ends inside its header"));
        }
        let kind = match entry.header {
            Header::Commit => Kind::Object(gix::object::Kind::Commit),
            Header::Tree => Kind::Object(gix::object::Kind::Tree),
            Header::Blob => Kind::Object(gix::object::Kind::Blob),
            Header::Tag => Kind::Object(gix::object::Kind::Tag),
            Header::OfsDelta { base_distance } => {
                let base = at
                    .offset
                    .checked_sub(base_distance)
                    .filter(|_| base_distance > 0)
                    .ok_or_else(|| self.corrupt(at, "delta base before the pack start"))?;
                Kind::Delta(At {
                    pack: at.pack,
                    offset: base,
                })
            }
            Header::RefDelta { base_id } => {
                let base = self.locate(&base_id).ok_or(Error::Missing {
                    id: base_id.to_string(),
                })?;
                Kind::Delta(base)
            }
        };
        Ok(Parsed {
            kind,
            header_len,
            size: entry.decompressed_size,
            ofs: matches!(entry.header, Header::OfsDelta { .. }),
        })
    }

    /// The inflated data of the entry `raw` (at `at`), which must be `parsed.size` bytes.
    pub fn inflate(&self, at: At, raw: &[u8], parsed: &Parsed) -> Result<Vec<u8>, Error> {
        // zlib cannot inflate by much more than 1032:1: a larger declared size is a damaged
        // header, refused before it becomes an allocation.
        let compressed = (raw.len() - parsed.header_len) as u64;
        if parsed.size > compressed.saturating_mul(1100).saturating_add(1024) {
            return Err(self.corrupt(at, "declared size impossible for its compressed bytes"));
        }
        let size = usize::try_from(parsed.size).map_err(|_| self.corrupt(at, "entry too large"))?;
        let mut out = vec![0u8; size];
        let mut z = gix_zlib::Decompress::new();
        let status = z
            .decompress(
                &raw[parsed.header_len..],
                &mut out,
                gix_zlib::FlushDecompress::Finish,
            )
            .map_err(|e| self.corrupt(at, format!("bad zlib stream: {e}")))?;
        if !matches!(status, gix_zlib::Status::StreamEnd) || z.total_out() != parsed.size {
            return Err(self.corrupt(at, "entry does not inflate to its declared size"));
        }
        Ok(out)
    }
}

impl Packs {
    /// The size of the object stored at `at`, from the entry's first bytes `prefix`: the
    /// header's size for a whole object, the result size a delta declares otherwise.
    pub fn object_size(&self, at: At, prefix: &[u8]) -> Result<u64, Error> {
        let parsed = self.parse(at, prefix)?;
        if let Kind::Object(_) = parsed.kind {
            return Ok(parsed.size);
        }
        // Two varints of at most 10 bytes each open the delta.
        let mut out = [0u8; 20];
        let mut z = gix_zlib::Decompress::new();
        let _ = z.decompress(
            &prefix[parsed.header_len..],
            &mut out,
            gix_zlib::FlushDecompress::Sync,
        );
        let made = (z.total_out() as usize).min(out.len());
        let mut i = 0;
        delta_varint(&out[..made], &mut i)
            .and_then(|_base| delta_varint(&out[..made], &mut i))
            .ok_or_else(|| self.corrupt(at, "delta sizes unreadable from its first bytes"))
    }
}

/// An entry's header, read.
#[derive(Debug, Clone, Copy)]
pub struct Parsed {
    pub kind: Kind,
    pub header_len: usize,
    /// Inflated size of the entry's data.
    pub size: u64,
    /// An OFS_DELTA (its header is rewritten when copied).
    pub ofs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object(gix::object::Kind),
    Delta(At),
}

/// A size of a delta's header at `*i` (7 bits a byte, low first), moving `i` past it.
pub(super) fn delta_varint(d: &[u8], i: &mut usize) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = *d.get(*i)?;
        *i += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Why a delta was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaError {
    /// It declares a result larger than the caller allows: refused before any allocation.
    TooLarge { declared: u64 },
    /// It does not apply: wrong base size, a copy outside the base, an instruction past its
    /// end, or a result other than the declared size.
    Bad,
}

/// Apply the git delta `delta` to `base` (gitformat-pack(5), "Deltified representation"),
/// producing at most `max` bytes. Memory is bounded by the result size the delta declares
/// (checked against `max` first), never by what its instructions would produce: each copy
/// and insert is checked against the declared size before it is made, so a few bytes of
/// copy instructions cannot build gigabytes.
pub fn apply_delta(base: &[u8], delta: &[u8], max: u64) -> Result<Vec<u8>, DeltaError> {
    let varint = |i: &mut usize| delta_varint(delta, i).ok_or(DeltaError::Bad);
    let mut i = 0;
    if varint(&mut i)? != base.len() as u64 {
        return Err(DeltaError::Bad);
    }
    let declared = varint(&mut i)?;
    if declared > max {
        return Err(DeltaError::TooLarge { declared });
    }
    let size = usize::try_from(declared).map_err(|_| DeltaError::TooLarge { declared })?;
    // The declared size is only trusted as far as the delta could produce it.
    let mut out = Vec::with_capacity(
        size.min(
            base.len()
                .saturating_add(delta.len().saturating_mul(0x10000)),
        ),
    );
    let bad = DeltaError::Bad;
    while i < delta.len() {
        let op = delta[i];
        i += 1;
        let piece = if op & 0x80 != 0 {
            let (mut off, mut len) = (0usize, 0usize);
            for bit in 0..4 {
                if op & (1 << bit) != 0 {
                    off |= usize::from(*delta.get(i).ok_or(bad)?) << (8 * bit);
                    i += 1;
                }
            }
            for bit in 0..3 {
                if op & (0x10 << bit) != 0 {
                    len |= usize::from(*delta.get(i).ok_or(bad)?) << (8 * bit);
                    i += 1;
                }
            }
            if len == 0 {
                len = 0x10000;
            }
            base.get(off..off.checked_add(len).ok_or(bad)?).ok_or(bad)?
        } else if op != 0 {
            let n = usize::from(op);
            let piece = delta.get(i..i + n).ok_or(bad)?;
            i += n;
            piece
        } else {
            return Err(bad);
        };
        if piece.len() > size - out.len() {
            return Err(bad);
        }
        out.extend_from_slice(piece);
    }
    if out.len() == size {
        Ok(out)
    } else {
        Err(bad)
    }
}

/// A pack written from raw entries of stored packs into a file (the caller's, empty), so
/// that memory holds only the entries being copied, never the pack.
pub struct Writer {
    out: std::io::BufWriter<std::fs::File>,
    pos: u64,
    count: u32,
    /// Entries copied: where they came from -> their offset here.
    copied: HashMap<At, u64>,
}

impl Writer {
    pub fn new(file: std::fs::File) -> Result<Writer, Error> {
        let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
        out.write_all(b"PACK\0\0\0\x02\0\0\0\0")
            .map_err(Error::Write)?;
        Ok(Writer {
            out,
            pos: 12,
            count: 0,
            copied: HashMap::new(),
        })
    }

    pub fn has(&self, at: At) -> bool {
        self.copied.contains_key(&at)
    }

    /// Append the raw entry `raw` read at `at`. An OFS_DELTA's base must be appended first;
    /// a REF_DELTA's base may come anywhere in the pack.
    pub fn append(&mut self, at: At, raw: &[u8], parsed: &Parsed) -> Result<(), Error> {
        if self.has(at) {
            return Ok(());
        }
        let pos = self.pos;
        let mut head = Vec::new();
        let body = match parsed.kind {
            Kind::Delta(base) if parsed.ofs => {
                let base_pos = *self.copied.get(&base).ok_or(Error::Corrupt {
                    pack: "being built".into(),
                    offset: at.offset,
                    why: "delta written before its base".into(),
                })?;
                Header::OfsDelta {
                    base_distance: pos - base_pos,
                }
                .write_to(parsed.size, &mut head)
                .map_err(Error::Write)?;
                &raw[parsed.header_len..]
            }
            _ => raw,
        };
        self.out.write_all(&head).map_err(Error::Write)?;
        self.out.write_all(body).map_err(Error::Write)?;
        self.pos += (head.len() + body.len()) as u64;
        self.count = self.count.checked_add(1).ok_or(Error::TooMany)?;
        self.copied.insert(at, pos);
        Ok(())
    }

    /// The finished pack (object count and trailer filled in), rewound to its start.
    pub fn finish(self) -> Result<std::fs::File, Error> {
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| Error::Write(e.into_error()))?;
        file.seek(SeekFrom::Start(8)).map_err(Error::Write)?;
        file.write_all(&self.count.to_be_bytes())
            .map_err(Error::Write)?;
        file.seek(SeekFrom::Start(0)).map_err(Error::Write)?;
        let mut hasher = gix_hash::hasher(gix_hash::Kind::Sha1);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = file.read(&mut buf).map_err(Error::Write)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sum = hasher
            .try_finalize()
            .map_err(|_| Error::Write(std::io::Error::other("SHA-1 collision in the pack")))?;
        file.write_all(sum.as_slice()).map_err(Error::Write)?;
        file.seek(SeekFrom::Start(0)).map_err(Error::Write)?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::testing::{git, pack_of_history};

    /// Every object of a real git pack, read by its idx range, inflated and its delta chain
    /// applied, hashes to its id; a pack copied entry by entry (chains first, OFS_DELTA
    /// headers rewritten) is accepted by `git index-pack` with the same ids.
    #[test]
    fn ranges_contents_and_copies_of_a_git_pack() {
        let tmp = tempfile::tempdir().expect("tmp");
        let pack = pack_of_history(&tmp.path().join("src"), 6);
        let path = tmp.path().join("x.pack");
        std::fs::write(&path, &pack).expect("write pack");
        git(tmp.path(), &["index-pack", "x.pack"]);
        let idx = std::fs::read(tmp.path().join("x.idx")).expect("idx");
        let mut packs = Packs::default();
        let n = packs.add("x", pack.len() as u64, &idx).expect("idx parses");
        let ids = super::super::idx_file::object_ids(&idx, "x").expect("ids");
        fn content(
            packs: &Packs,
            raw: &dyn Fn(At) -> &'static [u8],
            at: At,
        ) -> (gix::object::Kind, Vec<u8>) {
            let bytes = raw(at);
            let parsed = packs.parse(at, bytes).expect("parses");
            let data = packs.inflate(at, bytes, &parsed).expect("inflates");
            match parsed.kind {
                Kind::Object(kind) => (kind, data),
                Kind::Delta(base) => {
                    let (kind, base) = content(packs, raw, base);
                    (
                        kind,
                        apply_delta(&base, &data, u64::MAX).expect("delta applies"),
                    )
                }
            }
        }
        // 'static for the recursive helper: a test's few KB, leaked on purpose.
        let pack_static: &'static [u8] = Box::leak(pack.clone().into_boxed_slice());
        let raw = |at: At| {
            let r = packs.range(at).expect("range");
            &pack_static[r.start as usize..r.end as usize]
        };
        let mut deltas = 0;
        let mut writer = Writer::new(tempfile::tempfile().expect("temp file")).expect("writer");
        for id in &ids {
            let at = packs.locate(id).expect("located");
            assert_eq!(at.pack, n);
            let (kind, data) = content(&packs, &raw, at);
            let computed =
                gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, &data).expect("hash");
            assert_eq!(&computed, id, "{id}");
            // Copy bases first.
            let mut chain = vec![at];
            while let Kind::Delta(base) = packs
                .parse(
                    *chain.last().expect("chain"),
                    raw(*chain.last().expect("chain")),
                )
                .expect("parses")
                .kind
            {
                chain.push(base);
                deltas += 1;
            }
            for at in chain.into_iter().rev() {
                let parsed = packs.parse(at, raw(at)).expect("parses");
                writer.append(at, raw(at), &parsed).expect("appends");
            }
        }
        assert!(deltas > 0, "the fixture has delta chains");
        // Sizes from 1 KiB prefixes, for whole objects and deltas alike.
        for id in &ids {
            let at = packs.locate(id).expect("located");
            let r = packs.range(at).expect("range");
            let prefix = &whole_prefix(&pack, r.start, r.end.min(r.start + 1024));
            let (_, data) = content(&packs, &raw, at);
            assert_eq!(
                packs.object_size(at, prefix).expect("size"),
                data.len() as u64
            );
        }
        let mut copy = Vec::new();
        writer
            .finish()
            .expect("finish")
            .read_to_end(&mut copy)
            .expect("read copy");
        std::fs::write(tmp.path().join("y.pack"), copy).expect("write copy");
        git(tmp.path(), &["index-pack", "y.pack"]);
        let copied = std::fs::read(tmp.path().join("y.idx")).expect("idx of copy");
        assert_eq!(
            super::super::idx_file::object_ids(&copied, "y").expect("ids"),
            ids
        );
    }

    fn whole_prefix(pack: &[u8], start: u64, end: u64) -> Vec<u8> {
        pack[start as usize..end as usize].to_vec()
    }

    /// A damaged header declaring a terabyte is refused before anything is allocated.
    #[test]
    fn impossible_sizes_are_refused() {
        let packs = Packs::default();
        let at = At {
            pack: 0,
            offset: 12,
        };
        let mut raw = Vec::new();
        Header::Blob.write_to(1 << 40, &mut raw).expect("header");
        raw.extend_from_slice(&[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        let parsed = packs.parse(at, &raw).expect("a header parses");
        let err = packs.inflate(at, &raw, &parsed).expect_err("refused");
        assert!(err.to_string().contains("impossible"), "{err}");
        // A delta that claims a huge result but produces a few bytes: refused, not allocated.
        assert_eq!(
            apply_delta(b"ab", &[2, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, b'x'], u64::MAX),
            Err(DeltaError::Bad)
        );
        assert_eq!(
            apply_delta(b"ab", &[2, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, b'x'], 1 << 20),
            Err(DeltaError::TooLarge {
                declared: 0xffff_ffff
            })
        );
    }

    /// Issue 21: 65,536 copy ops of 64 KiB each (4 GiB) from a 715-byte delta that declares
    /// 100 bytes. Each copy is checked against the declared size before it is made.
    #[test]
    fn a_delta_never_builds_more_than_it_declares() {
        let base = vec![7u8; 0x10000];
        let mut delta = vec![0x80, 0x80, 0x04, 100];
        delta.extend(std::iter::repeat_n(0x80u8, 65_536));
        assert_eq!(apply_delta(&base, &delta, u64::MAX), Err(DeltaError::Bad));
        // Declaring the 4 GiB it would build: refused before any allocation.
        let mut honest = vec![0x80, 0x80, 0x04, 0x80, 0x80, 0x80, 0x80, 0x10];
        honest.extend(std::iter::repeat_n(0x80u8, 65_536));
        assert_eq!(
            apply_delta(&base, &honest, 1 << 30),
            Err(DeltaError::TooLarge { declared: 1 << 32 })
        );
    }

    #[test]
    fn delta_copy_and_insert() {
        let base = b"hello world";
        // base size 11, result size 8: copy "hello" (offset 0, len 5), insert "!!!".
        let delta = [11, 8, 0x90, 5, 3, b'!', b'!', b'!'];
        assert_eq!(
            apply_delta(base, &delta, 8).as_deref(),
            Ok(&b"hello!!!"[..])
        );
        // Wrong base size, or a copy past the base: refused, never a panic.
        assert_eq!(apply_delta(b"short", &delta, 8), Err(DeltaError::Bad));
        assert_eq!(
            apply_delta(base, &[11, 5, 0x91, 9, 5], 8),
            Err(DeltaError::Bad)
        );
        assert_eq!(
            apply_delta(base, &delta, 7),
            Err(DeltaError::TooLarge { declared: 8 })
        );
    }
}
