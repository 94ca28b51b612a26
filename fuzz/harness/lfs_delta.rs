//! `lfs_delta`: what the delta upload of an LFS object (issue 22 part 4) parses from the
//! other side: a chunk index or chunk list (`lfs_chunks::decode`; the server reads an
//! agent's list, and its own indexes from a store), the server's plan as the agent checks it
//! (`lfs_agent::delta::check_plan`), and the chunker itself.
//!
//! Input: a selector byte, then the body. Checks: never a panic; a chunk index that decodes
//! encodes back to the same bytes, and its lengths make its size; a plan the agent accepts
//! has ranges in order, apart, within the object, and makes the object with the bytes reused;
//! the chunker cuts the same chunks whatever pieces the bytes come in.

use hypha_git::api::lfs::{DeltaPlan, DeltaRequest};
use hypha_git::lfs_agent::delta::check_plan;
use hypha_git::lfs_chunks::{self, Chunker, MAX_CHUNK};

pub fn run(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => index(body),
        1 => {
            if body.len() < 8 {
                return;
            }
            let size = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
            if let Ok(plan) = serde_json::from_slice::<DeltaPlan>(&body[8..]) {
                if check_plan(&plan, size).is_ok() {
                    let mut end = 0u64;
                    let mut sent = 0u64;
                    for r in &plan.ranges {
                        assert!(r.len > 0 && r.offset >= end);
                        end = r.offset + r.len;
                        assert!(end <= size);
                        sent += r.len;
                    }
                    assert_eq!(sent + plan.reused, size);
                }
            }
        }
        2 => {
            // As the server reads a delta request.
            use base64::Engine as _;
            if let Ok(req) = serde_json::from_slice::<DeltaRequest>(body) {
                if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(&req.chunks) {
                    index(&raw);
                }
            }
        }
        _ => {
            // The chunker: pieces cut where the first byte says.
            let Some((&step, bytes)) = body.split_first() else {
                return;
            };
            let mut whole = Chunker::new();
            whole.feed(bytes);
            let whole = whole.finish();
            let mut pieces = Chunker::new();
            for p in bytes.chunks(usize::from(step).max(1)) {
                pieces.feed(p);
            }
            assert_eq!(whole, pieces.finish());
            let total: u64 = whole.iter().map(|c| u64::from(c.len)).sum();
            assert_eq!(total, bytes.len() as u64);
            assert!(whole.iter().all(|c| c.len > 0 && c.len <= MAX_CHUNK));
        }
    }
}

fn index(bytes: &[u8]) {
    if let Ok((size, chunks)) = lfs_chunks::decode(bytes) {
        assert_eq!(lfs_chunks::encode(size, &chunks), bytes);
        assert_eq!(chunks.iter().map(|c| u64::from(c.len)).sum::<u64>(), size);
    }
}
