//! Object ids listed in a pack index, version 2 (gitformat-pack(5)).
//!
//! Pure parsing shared by both sides: the helper reads a remote idx to decide whether a pack
//! holds anything it lacks; the server reads idx files to check that a compacted pack holds
//! every object of the packs it retires.
//! Only the header, fan-out table and sorted id table are read; offsets and CRCs are not
//! needed.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("index of {pack} is not a version 2 pack index")]
    NotV2 { pack: String },
    #[error("index of {pack} is truncated")]
    Truncated { pack: String },
}

const HEADER: &[u8] = b"\xfftOc\x00\x00\x00\x02";
const FANOUT: usize = 256 * 4;

/// The SHA-1 object ids in `idx`, in index (sorted) order.
pub fn object_ids(idx: &[u8], pack: &str) -> Result<Vec<[u8; 20]>, Error> {
    if idx.len() < HEADER.len() + FANOUT || &idx[..HEADER.len()] != HEADER {
        return Err(Error::NotV2 {
            pack: pack.to_owned(),
        });
    }
    let last = &idx[HEADER.len() + FANOUT - 4..HEADER.len() + FANOUT];
    let count = u32::from_be_bytes([last[0], last[1], last[2], last[3]]) as usize;
    let start = HEADER.len() + FANOUT;
    // ids, crc32s, 4-byte offsets, then two trailing checksums at least.
    let needed = count
        .checked_mul(20 + 4 + 4)
        .and_then(|n| n.checked_add(start + 40))
        .ok_or_else(|| Error::Truncated {
            pack: pack.to_owned(),
        })?;
    if idx.len() < needed {
        return Err(Error::Truncated {
            pack: pack.to_owned(),
        });
    }
    Ok(idx[start..start + count * 20]
        .chunks_exact(20)
        .map(|c| {
            let mut id = [0u8; 20];
            id.copy_from_slice(c);
            id
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage() {
        assert!(matches!(object_ids(b"nope", "p"), Err(Error::NotV2 { .. })));
        let mut idx = HEADER.to_vec();
        idx.extend(std::iter::repeat_n(0u8, FANOUT - 4));
        idx.extend(1000u32.to_be_bytes());
        assert!(matches!(
            object_ids(&idx, "p"),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn reads_ids() {
        let ids = [[1u8; 20], [2u8; 20]];
        let mut idx = HEADER.to_vec();
        for i in 0..256u32 {
            let n: u32 = match i {
                0 => 0,
                1 => 1,
                _ => 2,
            };
            idx.extend(n.to_be_bytes());
        }
        for id in &ids {
            idx.extend(id);
        }
        idx.extend([0u8; 8 * 2 + 40]);
        assert_eq!(object_ids(&idx, "p"), Ok(ids.to_vec()));
    }
}
