//! `delta_compose`: `pack::delta_compose::Composer`, which reads the deltas of a chain in a
//! stored pack (a thin-pack completion's long chains) and writes one delta for all of them.
//!
//! Input: a selector for the inserted-bytes bound, a root (fuzzer bytes, or a synthetic one
//! of a chosen size so that copies of up to 64 KiB hit), then up to six length-prefixed
//! deltas, each applied to the version the ones before made. Checks: never a panic; each
//! delta composes exactly when the reference applier (`delta::reference`, git's
//! patch-delta) applies it to that version, unless the composer's own bounds refuse it
//! (`TooLarge`, and then only with that many inserted bytes or pieces); a refusal changes
//! nothing; and after every step the composed delta makes, from the root, the version itself.

use super::delta::reference;
use super::input::Input;
use hypha_git::pack::delta_compose::Composer;
use hypha_git::pack::entries::DeltaError;

/// Largest version the harness builds with the reference (memory of one run).
const HARNESS_MAX: usize = 16 << 20;

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let max_inserted = match inp.u8() % 3 {
        0 => 1 << 20,
        1 => usize::from(inp.u16()),
        _ => 0,
    };
    let root: Vec<u8> = if inp.bool() {
        let len = inp.u32() as usize % (1 << 18);
        let seed = inp.u8();
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    } else {
        inp.chunk(4096).to_vec()
    };
    let mut composer = Composer::new(root.len() as u64, max_inserted).expect("a small root");
    let mut version = root.clone();
    for _ in 0..6 {
        if inp.is_empty() {
            break;
        }
        let delta = inp.chunk(4096);
        let expected = reference(&version, delta);
        match (composer.apply(delta), expected) {
            (Ok(()), Ok(next)) => version = next,
            (Ok(()), Err(())) => {
                // The reference's own bound on what it builds; the composer builds nothing.
                assert!(
                    declared(delta).is_some_and(|d| d > HARNESS_MAX as u64),
                    "composed a delta the reference refuses"
                );
                return;
            }
            (Err(DeltaError::Bad), Ok(next)) => {
                panic!("refused a delta that applies ({} bytes)", next.len())
            }
            (Err(DeltaError::Bad), Err(())) => {}
            (Err(DeltaError::TooLarge { .. }), _) => {}
        }
        if version.len() > HARNESS_MAX {
            return;
        }
        assert_eq!(composer.size(), version.len() as u64);
        let composed = composer.encode();
        assert_eq!(
            reference(&root, &composed).as_deref(),
            Ok(&version[..]),
            "the composed delta does not make the version"
        );
    }
}

fn declared(delta: &[u8]) -> Option<u64> {
    let mut i = 0;
    let mut sizes = [0u64; 2];
    for size in &mut sizes {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = *delta.get(i)?;
            i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        *size = v;
    }
    Some(sizes[1])
}
