//! `delta`: `pack::entries::apply_delta(base, delta, max)`, the delta applier that runs on
//! bases and deltas read from stored packs (shallow fetches, thin-pack completion).
//!
//! Input: a selector byte for `max`, a base (fuzzer bytes, or a synthetic base of a chosen
//! size so that copies of up to 64 KiB hit), then the delta. Checks: never a panic; an `Ok`
//! result has exactly the size the delta declares and never more than `max`; the result is
//! the one an independent reference applier (git's `patch_delta`, with strict varints)
//! computes, and every refusal is one the reference refuses too (or `TooLarge` when the
//! declared size is over `max`).

use super::input::Input;
use hypha_git::pack::entries::{apply_delta, DeltaError};

/// Largest declared result the harness allows itself to build (memory of one run).
const HARNESS_MAX: u64 = 64 << 20;

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let max = match inp.u8() % 4 {
        0 => HARNESS_MAX,
        1 => u64::from(inp.u16()),
        2 => u64::from(inp.u32()) % (HARNESS_MAX + 1),
        _ => 0,
    };
    let synthetic: Vec<u8>;
    let base: &[u8] = if inp.bool() {
        let len = inp.u32() as usize % (1 << 18);
        let seed = inp.u8();
        synthetic = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        &synthetic
    } else {
        inp.chunk(4096)
    };
    let delta = inp.rest();
    check(base, delta, max);
}

/// The shared check, also used by the structured targets on generated deltas.
pub fn check(base: &[u8], delta: &[u8], max: u64) {
    let got = apply_delta(base, delta, max);
    let expected = reference(base, delta);
    match (&got, &expected) {
        (Ok(out), _) => {
            assert!(
                out.len() as u64 <= max,
                "result of {} bytes over max {max}",
                out.len()
            );
            let declared = declared_size(delta).expect("Ok with an unreadable declared size");
            assert_eq!(
                out.len() as u64,
                declared,
                "result size differs from the declared one"
            );
            assert_eq!(
                Ok(out),
                expected.as_ref(),
                "apply_delta differs from the reference"
            );
        }
        (Err(DeltaError::TooLarge { declared }), _) => {
            assert!(
                *declared > max,
                "TooLarge for {declared} bytes, max is {max}"
            );
            assert_eq!(Some(*declared), declared_size(delta));
        }
        (Err(DeltaError::Bad), Ok(out)) => {
            panic!(
                "apply_delta refused a delta the reference applies ({} bytes)",
                out.len()
            );
        }
        (Err(DeltaError::Bad), Err(())) => {}
    }
}

/// 7-bit little-endian varint, at most 64 bits, as `entries::delta_varint` reads it.
fn varint(d: &[u8], i: &mut usize) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0u32);
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

fn declared_size(delta: &[u8]) -> Option<u64> {
    let mut i = 0;
    varint(delta, &mut i)?;
    varint(delta, &mut i)
}

/// git's patch-delta.c, written for clarity, not speed: Err for every delta git refuses.
/// Refuses (as a bound of the harness) results over [`HARNESS_MAX`].
pub fn reference(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, ()> {
    let mut i = 0;
    let base_size = varint(delta, &mut i).ok_or(())?;
    if base_size != base.len() as u64 {
        return Err(());
    }
    let size = varint(delta, &mut i).ok_or(())?;
    if size > HARNESS_MAX {
        return Err(());
    }
    let mut left = size as usize;
    let mut out = Vec::new();
    while i < delta.len() {
        let cmd = delta[i];
        i += 1;
        if cmd & 0x80 != 0 {
            let mut off: u64 = 0;
            let mut len: u64 = 0;
            for (bit, shift) in [(0x01u8, 0u32), (0x02, 8), (0x04, 16), (0x08, 24)] {
                if cmd & bit != 0 {
                    off |= u64::from(*delta.get(i).ok_or(())?) << shift;
                    i += 1;
                }
            }
            for (bit, shift) in [(0x10u8, 0u32), (0x20, 8), (0x40, 16)] {
                if cmd & bit != 0 {
                    len |= u64::from(*delta.get(i).ok_or(())?) << shift;
                    i += 1;
                }
            }
            if len == 0 {
                len = 0x10000;
            }
            if off + len > base.len() as u64 || len > left as u64 {
                return Err(());
            }
            out.extend_from_slice(&base[off as usize..(off + len) as usize]);
            left -= len as usize;
        } else if cmd != 0 {
            let n = usize::from(cmd);
            if i + n > delta.len() || n > left {
                return Err(());
            }
            out.extend_from_slice(&delta[i..i + n]);
            i += n;
            left -= n;
        } else {
            return Err(());
        }
    }
    if left != 0 {
        return Err(());
    }
    Ok(out)
}
