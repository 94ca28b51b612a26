//! `idx`: `pack::idx_file::{object_ids, entries, largest_entry}` on arbitrary bytes (a
//! server's idx, read by a fetch; an uploaded idx, read by the server), and `write` on what
//! they return.
//!
//! Input: a byte selecting the shape (raw bytes, or a valid header and fanout with a count
//! taken from the input, so that the table parsing is reached), a pack size, then the idx.
//! Checks: never a panic; `entries` and `object_ids` agree; `largest_entry` is at most the
//! pack size when every offset is inside the pack; an idx of distinct ids written back with `write` parses to the same entries.

use super::input::Input;
use hypha_git::pack::idx_file::{entries, largest_entry, object_ids, write, Entry};

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let shape = inp.u8();
    let pack_size = match shape >> 4 {
        0 => u64::MAX,
        1 => 0,
        _ => u64::from(inp.u32()),
    };
    let mut idx = Vec::new();
    if shape & 1 == 1 {
        // A v2 header and a fanout whose last word is the count; the tables are the input's.
        let count = u32::from(inp.u16()) % 512;
        idx.extend_from_slice(b"\xfftOc\x00\x00\x00\x02");
        for i in 0..256u32 {
            let word = if i == 255 { count } else { count * i / 256 };
            idx.extend_from_slice(&word.to_be_bytes());
        }
    }
    idx.extend_from_slice(inp.rest());
    check(&idx, pack_size);
}

pub fn check(idx: &[u8], pack_size: u64) {
    let ids = object_ids(idx, "fuzz");
    let listed = entries(idx, "fuzz");
    let largest = largest_entry(idx, "fuzz", pack_size);
    match &listed {
        Ok(list) => {
            let ids = ids
                .as_ref()
                .expect("entries parsed where object_ids did not");
            assert_eq!(list.len(), ids.len());
            assert!(list.iter().zip(ids).all(|(e, id)| e.id == *id));
            let largest = largest.expect("largest_entry fails where entries parses");
            // Offsets past the pack (a corrupt idx) make gaps of any size: the result is only a
            // hint for choosing the indexer. Within the pack, no entry is larger than it.
            if list.iter().all(|e| e.offset < pack_size) {
                assert!(
                    largest <= pack_size,
                    "largest entry {largest} > pack size {pack_size}"
                );
            }
            let mut distinct = list.clone();
            distinct.sort_unstable_by_key(|e| e.id);
            distinct.dedup_by_key(|e| e.id);
            if distinct.len() == list.len() {
                let mut trailer = [0u8; 20];
                trailer[..4].copy_from_slice(b"fuzz");
                let mut again: Vec<Entry> = list.clone();
                let written = write(&mut again, &trailer, "fuzz").expect("write");
                let back = entries(&written, "fuzz").expect("written idx parses");
                assert_eq!(back, distinct, "write/entries round trip");
            }
        }
        Err(_) => assert!(largest.is_err()),
    }
}
