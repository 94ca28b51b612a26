//! Builds packs (and their idx) from fuzzer input for `pack_entries` and `thin`: honest
//! entries by default (real zlib streams, true sizes, real object ids, generated deltas that
//! apply), with per-entry flags that lie (sizes, streams, OFS distances, ids) and byte
//! mutations on top. A random byte string would almost never get past a pack's structure;
//! this way the fuzzer reaches the delta chains and the copying code.

use super::input::Input;
use gix_pack::data::entry::Header;
use hypha_git::pack::entries::{apply_delta, At, Kind, Packs};
use hypha_git::pack::idx_file::{self, Entry};
use std::io::Write;

/// Largest synthetic object: below thin completion's 64 KiB ratio allowance, so that an
/// honest thin pack is never refused as too dense.
pub const MAX_SYNTH: usize = 60_000;

/// An object's type and content.
pub type Object = (gix::object::Kind, Vec<u8>);

/// One object of a generated pack (or an external base).
#[derive(Debug, Clone)]
pub struct Obj {
    /// Its type and content, when known (an honest entry whose delta chain applies).
    pub object: Option<Object>,
    pub id: gix::ObjectId,
}

#[derive(Debug)]
pub struct Gen {
    /// The pack, trailer included.
    pub pack: Vec<u8>,
    /// Every entry in pack order: id, CRC32 of its raw bytes, offset.
    pub entries: Vec<Entry>,
    pub objs: Vec<Obj>,
    /// Every entry honest, every id distinct and every content known.
    pub clean: bool,
}

impl Gen {
    /// The idx of this pack (duplicate ids dropped: the first copy stays).
    pub fn idx(&self) -> Vec<u8> {
        let mut seen = std::collections::HashSet::new();
        let mut entries: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| seen.insert(e.id))
            .copied()
            .collect();
        let mut trailer = [0u8; 20];
        if self.pack.len() >= 20 {
            trailer.copy_from_slice(&self.pack[self.pack.len() - 20..]);
        }
        idx_file::write(&mut entries, &trailer, "generated").expect("idx writes")
    }
}

const KINDS: [(gix::object::Kind, Header); 4] = [
    (gix::object::Kind::Commit, Header::Commit),
    (gix::object::Kind::Tree, Header::Tree),
    (gix::object::Kind::Blob, Header::Blob),
    (gix::object::Kind::Tag, Header::Tag),
];

pub fn object_id(kind: gix::object::Kind, data: &[u8]) -> gix::ObjectId {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, data).expect("no collision")
}

pub fn sha1(parts: &[&[u8]]) -> gix::ObjectId {
    let mut h = gix_hash::hasher(gix_hash::Kind::Sha1);
    for p in parts {
        h.update(p);
    }
    h.try_finalize().expect("no collision")
}

pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z =
        gix_zlib::stream::deflate::Write::new(Vec::new(), gix_zlib::Compression::BEST_SPEED);
    z.write_all(data).expect("deflate");
    z.flush().expect("deflate");
    z.into_inner()
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A delta from `base` to a result made of copies of `base` and inserts, as the input says.
fn make_delta(inp: &mut Input, base: &[u8]) -> Vec<u8> {
    let mut ops = Vec::new();
    let mut size = 0u64;
    for _ in 0..1 + inp.u8() % 6 {
        if inp.bool() && !base.is_empty() {
            let off = usize::from(inp.u16()) % base.len();
            let len = 1 + usize::from(inp.u16()) % (base.len() - off).min(0xffff);
            let mut cmd = 0x80u8;
            let mut args = Vec::new();
            for (i, byte) in (off as u32).to_le_bytes().iter().enumerate() {
                if *byte != 0 {
                    cmd |= 1 << i;
                    args.push(*byte);
                }
            }
            for (i, byte) in (len as u32).to_le_bytes()[..3].iter().enumerate() {
                if *byte != 0 {
                    cmd |= 0x10 << i;
                    args.push(*byte);
                }
            }
            ops.push(cmd);
            ops.extend(args);
            size += len as u64;
        } else {
            let mut data = inp.chunk(127).to_vec();
            if data.is_empty() {
                data.push(b'x');
            }
            ops.push(data.len() as u8);
            ops.extend_from_slice(&data);
            size += data.len() as u64;
        }
    }
    let mut delta = Vec::new();
    varint(base.len() as u64, &mut delta);
    varint(size, &mut delta);
    delta.extend(ops);
    delta
}

/// A pack of at most `max_entries` entries; REF_DELTA entries may name `external` objects
/// (the bases of a thin pack).
pub fn generate(inp: &mut Input, external: &[Obj], max_entries: usize) -> Gen {
    let n = usize::from(inp.u8()) % (max_entries + 1);
    let pack_flags = inp.u8();
    let mut clean = true;
    let version = if pack_flags & 1 != 0 {
        clean = false;
        inp.u32()
    } else {
        2
    };
    let count = if pack_flags & 2 != 0 {
        clean = false;
        inp.u32()
    } else {
        n as u32
    };
    let mut pack = b"PACK".to_vec();
    pack.extend_from_slice(&version.to_be_bytes());
    pack.extend_from_slice(&count.to_be_bytes());
    let mut entries: Vec<Entry> = Vec::new();
    let mut objs: Vec<Obj> = Vec::new();
    for i in 0..n {
        let offset = pack.len() as u64;
        let sel = inp.u8();
        let mut choice = sel % 8;
        if choice >= 4 && i == 0 && (choice != 7 || external.is_empty()) {
            choice = sel % 4;
        }
        if choice == 7 && external.is_empty() {
            choice = 6;
        }
        // (header, body, type and content of the result when known)
        let (header, body, object): (Header, Vec<u8>, Option<Object>) = if choice < 4 {
            let (kind, header) = KINDS[usize::from(sel >> 3) % 4];
            let data = if sel & 0x80 != 0 {
                let len = usize::from(inp.u16()) % (MAX_SYNTH + 1);
                let seed = inp.u8();
                (0..len)
                    .map(|i| if i % 61 == 0 { seed } else { (i / 61) as u8 })
                    .collect()
            } else {
                inp.chunk(512).to_vec()
            };
            (header, data.clone(), Some((kind, data)))
        } else {
            let (header, base): (Header, Option<Object>) = match choice {
                4 | 5 => {
                    let j = usize::from(inp.u8()) % i;
                    (
                        Header::OfsDelta {
                            base_distance: offset - entries[j].offset,
                        },
                        objs[j].object.clone(),
                    )
                }
                6 if i > 0 => {
                    let j = usize::from(inp.u8()) % i;
                    (
                        Header::RefDelta {
                            base_id: objs[j].id,
                        },
                        objs[j].object.clone(),
                    )
                }
                6 => {
                    // No base anywhere: a delta on a missing object.
                    clean = false;
                    (
                        Header::RefDelta {
                            base_id: gix::ObjectId::from(inp.array20()),
                        },
                        None,
                    )
                }
                _ => {
                    let k = usize::from(inp.u8()) % external.len();
                    (
                        Header::RefDelta {
                            base_id: external[k].id,
                        },
                        external[k].object.clone(),
                    )
                }
            };
            let delta = match &base {
                Some((_, base)) if !inp.bool() => make_delta(inp, base),
                _ => inp.chunk(256).to_vec(),
            };
            let object = base.and_then(|(kind, base)| {
                let out = apply_delta(&base, &delta, 1 << 20).ok()?;
                Some((kind, out))
            });
            (header, delta, object)
        };
        let flags = inp.u8();
        let mut honest = object.is_some();
        let size = if flags & 0x01 != 0 {
            let size = u64::from(inp.u32());
            honest &= size == body.len() as u64;
            size
        } else {
            body.len() as u64
        };
        let mut stream = if flags & 0x02 != 0 {
            honest = false;
            inp.chunk(256).to_vec()
        } else {
            deflate(&body)
        };
        if flags & 0x04 != 0 && !stream.is_empty() {
            honest = false;
            let cut = 1 + usize::from(inp.u8()) % stream.len();
            stream.truncate(stream.len() - cut);
        }
        if flags & 0x08 != 0 {
            let junk = inp.chunk(16);
            honest &= junk.is_empty();
            stream.extend_from_slice(junk);
        }
        let header = match header {
            Header::OfsDelta { base_distance } if flags & 0x10 != 0 => {
                let d = u64::from(inp.u16());
                honest &= d == base_distance;
                Header::OfsDelta { base_distance: d }
            }
            h => h,
        };
        let mut raw = Vec::new();
        header.write_to(size, &mut raw).expect("header");
        raw.extend_from_slice(&stream);
        let id = if flags & 0x20 != 0 {
            honest = false;
            gix::ObjectId::from(inp.array20())
        } else {
            match &object {
                Some((kind, data)) if honest => object_id(*kind, data),
                // Unknown content: an id no honest object has.
                _ => sha1(&[b"unresolvable", &raw, &(i as u64).to_le_bytes()]),
            }
        };
        clean &= honest;
        pack.extend_from_slice(&raw);
        entries.push(Entry {
            id,
            crc32: crc32fast::hash(&raw),
            offset,
        });
        objs.push(Obj {
            object: if honest { object } else { None },
            id,
        });
    }
    let trailer = sha1(&[&pack]);
    pack.extend_from_slice(trailer.as_bytes());
    let mut ids = std::collections::HashSet::new();
    clean &= entries.iter().all(|e| ids.insert(e.id));
    Gen {
        pack,
        entries,
        objs,
        clean,
    }
}

/// Up to four byte mutations (flip, truncate, insert) over `bufs`, as the input says; whether
/// anything changed.
pub fn mutate(inp: &mut Input, bufs: &mut [&mut Vec<u8>]) -> bool {
    let mut changed = false;
    for _ in 0..inp.u8() % 5 {
        let which = usize::from(inp.u8()) % bufs.len();
        let buf = &mut *bufs[which];
        let op = inp.u8();
        let pos = inp.u32() as usize % (buf.len() + 1);
        match op % 4 {
            0 | 1 if pos < buf.len() => {
                let x = inp.u8() | 1;
                buf[pos] ^= x;
                changed = true;
            }
            2 if pos < buf.len() => {
                buf.truncate(pos);
                changed = true;
            }
            _ => {
                buf.insert(pos, inp.u8());
                changed = true;
            }
        }
    }
    changed
}

/// Rewrite the trailer of `pack` for its content (so that corruption inside reaches the
/// parsers instead of the checksum).
pub fn fix_trailer(pack: &mut [u8]) {
    if pack.len() >= 20 {
        let end = pack.len() - 20;
        let sum = sha1(&[&pack[..end]]);
        pack[end..].copy_from_slice(sum.as_bytes());
    }
}

/// Read object `at` of `pack` through `packs` (the `entries` API), its delta chain applied.
pub fn resolve(
    packs: &Packs,
    pack: &[u8],
    at: At,
    depth: usize,
) -> Result<(gix::object::Kind, Vec<u8>), String> {
    if depth > 64 {
        return Err("chain too deep".into());
    }
    let r = packs.range(at).ok_or("no range")?;
    let raw = pack
        .get(r.start as usize..r.end as usize)
        .ok_or("range outside the pack")?;
    let parsed = packs.parse(at, raw).map_err(|e| e.to_string())?;
    let data = packs.inflate(at, raw, &parsed).map_err(|e| e.to_string())?;
    assert_eq!(
        data.len() as u64,
        parsed.size,
        "inflate returned another size than declared"
    );
    match parsed.kind {
        Kind::Object(kind) => Ok((kind, data)),
        Kind::Delta(base) => {
            let (kind, base) = resolve(packs, pack, base, depth + 1)?;
            super::delta::check(&base, &data, 1 << 22);
            let out = apply_delta(&base, &data, 1 << 22).map_err(|e| format!("{e:?}"))?;
            Ok((kind, out))
        }
    }
}
