//! `pack_entries`: `pack::entries::Packs` (`add` from an idx, `range`, `parse`, `inflate`,
//! `object_size`) and `Writer` (`append`, `finish`), what a shallow or partial fetch runs on
//! entries read by range from a server's packs.
//!
//! Two modes, by the first byte:
//! - raw: one entry of fuzzer bytes at a fuzzer offset, through `parse`, `inflate` and
//!   `object_size` (every prefix length);
//! - structured: a generated pack and its idx ([`super::packgen`]), mutated, added with
//!   `Packs::add`; every object is located, parsed, inflated, its chain resolved and its size
//!   read from prefixes; all of it copied with `Writer`.
//!
//! Checks: never a panic; `inflate` returns the declared size; `object_size` of a whole entry
//! agrees with what the entry resolves to; an unmutated honest pack resolves every object to
//! the content and id it was generated from.

use super::input::Input;
use super::packgen::{self, object_id};
use hypha_git::pack::entries::{At, Kind, Packs, Writer};
use hypha_git::pack::idx_file;

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    if inp.u8().is_multiple_of(8) {
        raw(&mut inp);
    } else {
        structured(&mut inp);
    }
}

fn raw(inp: &mut Input) {
    let packs = Packs::default();
    let at = At {
        pack: 0,
        offset: u64::from(inp.u32()),
    };
    let raw = inp.rest();
    let Ok(parsed) = packs.parse(at, raw) else {
        return;
    };
    assert!(parsed.header_len <= raw.len());
    if let Ok(data) = packs.inflate(at, raw, &parsed) {
        assert_eq!(data.len() as u64, parsed.size);
        if let Kind::Object(_) = parsed.kind {
            assert_eq!(packs.object_size(at, raw).ok(), Some(parsed.size));
        }
    }
    for end in (0..=raw.len()).step_by(1 + raw.len() / 16) {
        let _ = packs.object_size(at, &raw[..end]);
    }
}

fn structured(inp: &mut Input) {
    let generated = packgen::generate(inp, &[], 12);
    let mut pack = generated.pack.clone();
    let mut idx = generated.idx();
    let mutated = packgen::mutate(inp, &mut [&mut pack, &mut idx]);
    // The size the caller believes (from the server's listing).
    let pack_size = match inp.u8() % 8 {
        0 => u64::from(inp.u32()),
        _ => pack.len() as u64,
    };
    let honest = generated.clean && !mutated && pack_size == pack.len() as u64;
    let mut packs = Packs::default();
    let n = match packs.add("fuzz", pack_size, &idx) {
        Ok(n) => n,
        Err(e) => {
            assert!(!honest, "an honest pack's idx was refused: {e}");
            return;
        }
    };
    let Ok(ids) = idx_file::object_ids(&idx, "fuzz") else {
        panic!("Packs::add took an idx that object_ids refuses");
    };
    let prefix_len = 1 + usize::from(inp.u16()) % 2048;
    let mut writer = Writer::new(tempfile::tempfile().expect("temp file")).expect("writer");
    for id in &ids {
        let at = packs.locate(id).expect("an id of the idx is located");
        assert_eq!(at.pack, n);
        assert!(packs.id_at(at).is_some(), "a located entry has no id");
        let Some(range) = packs.range(at) else {
            panic!("no range for a located entry at {}", at.offset)
        };
        let resolved = packgen::resolve(&packs, &pack, at, 0);
        if let Some(raw) = pack.get(range.start as usize..range.end as usize) {
            for end in [raw.len().min(prefix_len), raw.len()] {
                let size = packs.object_size(at, &raw[..end]);
                if let (Ok((_, data)), Ok(size), true) = (&resolved, &size, end == raw.len()) {
                    assert_eq!(
                        *size,
                        data.len() as u64,
                        "object_size differs from the content"
                    );
                }
            }
            // Copy it with its chain, bases first, as `fetch_shallow` does.
            let mut chain = vec![at];
            while let Ok(parsed) = packs.parse(
                *chain.last().expect("chain"),
                raw_at(&packs, &pack, *chain.last().expect("chain")),
            ) {
                match parsed.kind {
                    Kind::Delta(base) if chain.len() < 64 && !chain.contains(&base) => {
                        chain.push(base)
                    }
                    _ => break,
                }
            }
            for at in chain.into_iter().rev() {
                let raw = raw_at(&packs, &pack, at);
                if let Ok(parsed) = packs.parse(at, raw) {
                    let _ = writer.append(at, raw, &parsed);
                }
            }
        }
        if honest {
            let (kind, data) = resolved.unwrap_or_else(|e| panic!("honest object unreadable: {e}"));
            assert_eq!(
                &object_id(kind, &data),
                id,
                "honest object resolves to another id"
            );
        }
    }
    let _ = writer.finish().expect("finish");
}

fn raw_at<'a>(packs: &Packs, pack: &'a [u8], at: At) -> &'a [u8] {
    packs
        .range(at)
        .and_then(|r| pack.get(r.start as usize..r.end as usize))
        .unwrap_or(&[])
}
