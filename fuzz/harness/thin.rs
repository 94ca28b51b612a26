//! `thin`: `pack::thin::complete`, what the server runs on a pushed thin pack and its idx
//! (`fix-thin`), copying bases out of the repository's live packs.
//!
//! Input: a generated live pack (its idx gives `Source::locate`/`id_at`), a generated thin
//! pack whose REF_DELTAs name live objects, its idx, then mutations of any of the four, an
//! optional rewrite of the thin trailer and the thin size claimed. An in-memory [`Source`]
//! serves the bytes.
//!
//! Checks: never a panic; an honest, unmutated input completes; a completed pack is
//! self-contained: its idx lists `count` objects whose entries all resolve (through the
//! `entries` API) to content hashing to their id, and the idx agrees with the completed pack
//! on offsets and CRC32s.

use super::input::Input;
use super::packgen::{self, object_id, Obj};
use bytes::Bytes;
use hypha_git::pack::entries::Packs;
use hypha_git::pack::idx_file::{self, Entry};
use hypha_git::pack::thin::{complete, Located, Source};
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

/// The thin pack and one live pack, in memory.
struct Mem {
    thin: Bytes,
    live: Bytes,
    live_size: u64,
    live_entries: Vec<Entry>,
}

fn slice(b: &Bytes, range: Range<u64>) -> io::Result<Bytes> {
    if range.start > range.end {
        return Err(io::Error::other(format!("inverted range {range:?}")));
    }
    let len = b.len() as u64;
    let (start, end) = (range.start.min(len), range.end.min(len));
    Ok(b.slice(start as usize..end as usize))
}

impl Source for Mem {
    fn read(&mut self, pack: Option<usize>, range: Range<u64>) -> io::Result<Bytes> {
        match pack {
            None => slice(&self.thin, range),
            Some(0) => slice(&self.live, range),
            Some(n) => panic!("complete read pack {n}, which locate never named"),
        }
    }
    fn locate(&mut self, id: &gix::ObjectId) -> io::Result<Option<Located>> {
        Ok(self
            .live_entries
            .iter()
            .find(|e| e.id == *id)
            .map(|e| Located {
                pack: 0,
                offset: e.offset,
                pack_size: self.live_size,
            }))
    }
    fn id_at(&mut self, pack: usize, offset: u64) -> io::Result<Option<gix::ObjectId>> {
        assert_eq!(pack, 0, "id_at of a pack locate never named");
        Ok(self
            .live_entries
            .iter()
            .find(|e| e.offset == offset)
            .map(|e| e.id))
    }
    fn name(&self, pack: usize) -> String {
        format!("live{pack}")
    }
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let live = packgen::generate(&mut inp, &[], 10);
    let external: Vec<Obj> = live.objs.clone();
    let thin = packgen::generate(&mut inp, &external, 10);
    let (mut live_pack, mut live_idx) = (live.pack.clone(), live.idx());
    let (mut thin_pack, mut thin_idx) = (thin.pack.clone(), thin.idx());
    let mutated = packgen::mutate(
        &mut inp,
        &mut [&mut thin_pack, &mut thin_idx, &mut live_pack, &mut live_idx],
    );
    if inp.bool() {
        packgen::fix_trailer(&mut thin_pack);
    }
    let thin_size = match inp.u8() % 16 {
        0 => u64::from(inp.u32()),
        _ => thin_pack.len() as u64,
    };
    let live_size = match inp.u8() % 16 {
        0 => u64::from(inp.u32()),
        _ => live_pack.len() as u64,
    };
    // An honest push: the live objects are whole and well formed (their deltas resolve), and
    // every base the thin pack names is one of them.
    let honest = live.clean
        && thin.clean
        && !mutated
        && thin_size == thin_pack.len() as u64
        && live_size == live_pack.len() as u64;
    let live_entries = idx_file::entries(&live_idx, "live").unwrap_or_default();
    let mut src = Mem {
        thin: Bytes::from(thin_pack),
        live: Bytes::from(live_pack),
        live_size,
        live_entries,
    };
    // Without the idx (an inline thin pack the helper did not index): the same walk, nothing
    // to check against, and an honest pack still completes, to a pack whose trailer holds.
    let mut bare = Mem {
        thin: src.thin.clone(),
        live: src.live.clone(),
        live_size,
        live_entries: src.live_entries.clone(),
    };
    let mut out = tempfile::tempfile().expect("temp file");
    match complete(&mut bare, thin_size, None, &mut out) {
        Ok(done) => {
            assert!(done.idx.is_empty(), "no idx made without the thin idx");
            let mut pack = Vec::new();
            out.seek(SeekFrom::Start(0)).expect("seek");
            out.read_to_end(&mut pack).expect("read");
            assert_eq!(pack.len() as u64, done.pack_size, "pack_size differs");
            assert_eq!(
                packgen::sha1(&[&pack[..pack.len() - 20]]).as_bytes(),
                &pack[pack.len() - 20..],
                "completed pack's trailer, without the idx"
            );
        }
        Err(e) => assert!(
            !honest,
            "an honest thin pack was refused without its idx: {e}"
        ),
    }
    let mut out = tempfile::tempfile().expect("temp file");
    let done = match complete(&mut src, thin_size, Some(&thin_idx), &mut out) {
        Ok(done) => done,
        Err(e) => {
            assert!(!honest, "an honest thin pack was refused: {e}");
            return;
        }
    };
    let mut pack = Vec::new();
    out.seek(SeekFrom::Start(0)).expect("seek");
    out.read_to_end(&mut pack).expect("read");
    assert_eq!(
        pack.len() as u64,
        done.pack_size,
        "pack_size differs from the file"
    );
    assert_eq!(
        done.name,
        format!("pack-{}", hex::encode(&pack[pack.len() - 20..]))
    );
    assert_eq!(
        packgen::sha1(&[&pack[..pack.len() - 20]]).as_bytes(),
        &pack[pack.len() - 20..],
        "completed pack's trailer"
    );
    let entries = idx_file::entries(&done.idx, "completed").expect("completed idx parses");
    let count = u32::from_be_bytes([pack[8], pack[9], pack[10], pack[11]]);
    assert_eq!(count as usize, entries.len(), "count differs from the idx");
    let mut packs = Packs::default();
    packs
        .add("completed", done.pack_size, &done.idx)
        .expect("completed idx is consistent with its pack");
    // CRC32s of the idx match the entries' bytes.
    let mut offsets: Vec<u64> = entries.iter().map(|e| e.offset).collect();
    offsets.sort_unstable();
    offsets.push(done.pack_size - 20);
    for e in &entries {
        let i = offsets.binary_search(&e.offset).expect("offset");
        let raw = &pack[e.offset as usize..offsets[i + 1] as usize];
        assert_eq!(
            crc32fast::hash(raw),
            e.crc32,
            "CRC32 of entry at {}",
            e.offset
        );
    }
    if honest {
        // Self-contained, and every object is what its id says.
        for e in &entries {
            let at = packs.locate(&e.id).expect("located");
            let (kind, data) = packgen::resolve(&packs, &pack, at, 0)
                .unwrap_or_else(|why| panic!("completed object at {} unreadable: {why}", e.offset));
            assert_eq!(object_id(kind, &data), e.id, "object at {}", e.offset);
        }
    }
}
