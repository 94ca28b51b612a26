//! Pack index files (`.idx` version 2, gitformat-pack(5)): the object ids, CRC32s and offsets
//! they list, and writing one from those. Not the indexers that hash objects to write them
//! (`receive`, `receive_git`).
//!
//! Pure parsing and formatting of bytes; no file is opened here. Shared by both sides: a fetch
//! reads a remote idx to decide whether a pack holds anything it lacks, and checks a received
//! pack against it; the server's compaction checks that a merged pack holds every object of
//! the packs it retires; thin-pack completion (`thin`) reads the uploaded idx and the idx of
//! the packs it copies bases from, and writes the completed pack's idx with [`write`](fn@write).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("index of {pack} is not a version 2 pack index")]
    NotV2 { pack: String },
    #[error("index of {pack} is truncated")]
    Truncated { pack: String },
    /// SHA-1 collision detection fired on the index being written.
    #[error("index of {pack} hashes to a SHA-1 collision")]
    Collision { pack: String },
}

use gix::ObjectId;

const HEADER: &[u8] = b"\xfftOc\x00\x00\x00\x02";
const FANOUT: usize = 256 * 4;

/// The SHA-1 object ids in `idx`, in index (sorted) order.
pub fn object_ids(idx: &[u8], pack: &str) -> Result<Vec<ObjectId>, Error> {
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
        .map(ObjectId::from_bytes_or_panic)
        .collect())
}

/// One object of an idx: its id, the CRC32 of its raw entry, and its offset in the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: ObjectId,
    pub crc32: u32,
    pub offset: u64,
}

/// Every entry of `idx`, in index (id) order.
pub fn entries(idx: &[u8], pack: &str) -> Result<Vec<Entry>, Error> {
    let ids = object_ids(idx, pack)?;
    let count = ids.len();
    let truncated = || Error::Truncated {
        pack: pack.to_owned(),
    };
    let word = |at: usize| -> Result<u32, Error> {
        idx.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(truncated)
    };
    let crcs = HEADER.len() + FANOUT + count * 20;
    let small = crcs + count * 4;
    let large = small + count * 4;
    let mut out = Vec::with_capacity(count);
    for (i, id) in ids.into_iter().enumerate() {
        let offset = word(small + i * 4)?;
        let offset = if offset & 0x8000_0000 == 0 {
            u64::from(offset)
        } else {
            // An index into the table of 8-byte offsets that follows the 4-byte ones.
            let at = large + (offset & 0x7fff_ffff) as usize * 8;
            (u64::from(word(at)?) << 32) | u64::from(word(at + 4)?)
        };
        out.push(Entry {
            id,
            crc32: word(crcs + i * 4)?,
            offset,
        });
    }
    Ok(out)
}

/// The size in `pack_size` bytes of the largest entry of the pack `idx` describes (header and
/// compressed data: the gap from its offset to the next one, or to the 20-byte trailer).
pub fn largest_entry(idx: &[u8], pack: &str, pack_size: u64) -> Result<u64, Error> {
    let mut offsets: Vec<u64> = entries(idx, pack)?.iter().map(|e| e.offset).collect();
    offsets.sort_unstable();
    offsets.push(pack_size.saturating_sub(20));
    Ok(offsets
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0))
}

/// The largest idx a pack of `pack_size` bytes can have: every object takes at least 9 bytes
/// of its pack (a one-byte header and the shortest zlib stream), and 36 of the idx at most
/// (id, CRC32, offset, a large offset). A reader takes no more than this.
pub fn max_size(pack_size: u64) -> u64 {
    let objects = pack_size.saturating_sub(32) / 9;
    (8 + 1024 + 40u64).saturating_add(objects.saturating_mul(36))
}

/// A version 2 idx of `entries` (sorted here by id) for the pack whose trailer is
/// `pack_checksum`, ending in its own SHA-1, as `git index-pack` writes it. `entries` must not
/// hold an id twice (the caller checks: a pack with duplicates is refused).
pub fn write(
    entries: &mut [Entry],
    pack_checksum: &[u8; 20],
    pack: &str,
) -> Result<Vec<u8>, Error> {
    entries.sort_unstable_by_key(|e| e.id);
    let mut out = Vec::with_capacity(HEADER.len() + FANOUT + entries.len() * 28 + 40);
    out.extend_from_slice(HEADER);
    let mut at = 0usize;
    for byte in 0..=255u8 {
        while at < entries.len() && entries[at].id.as_bytes()[0] <= byte {
            at += 1;
        }
        out.extend_from_slice(&(at as u32).to_be_bytes());
    }
    for e in entries.iter() {
        out.extend_from_slice(e.id.as_bytes());
    }
    for e in entries.iter() {
        out.extend_from_slice(&e.crc32.to_be_bytes());
    }
    let mut large = Vec::new();
    for e in entries.iter() {
        let word = match u32::try_from(e.offset) {
            Ok(small) if small & 0x8000_0000 == 0 => small,
            _ => {
                let n = (large.len() / 8) as u32 | 0x8000_0000;
                large.extend_from_slice(&e.offset.to_be_bytes());
                n
            }
        };
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(&large);
    out.extend_from_slice(pack_checksum);
    let mut hasher = gix_hash::hasher(gix_hash::Kind::Sha1);
    hasher.update(&out);
    let own = hasher.try_finalize().map_err(|_| Error::Collision {
        pack: pack.to_owned(),
    })?;
    out.extend_from_slice(own.as_slice());
    Ok(out)
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
        let ids = [1u8, 2].map(|n| ObjectId::from([n; 20]));
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
            idx.extend(id.as_bytes());
        }
        idx.extend([0u8; 8 * 2 + 40]);
        assert_eq!(object_ids(&idx, "p"), Ok(ids.to_vec()));
    }

    /// An idx of three objects, the third at an 8-byte offset (a pack over 2 GiB).
    #[test]
    fn largest_entry_reads_both_offset_tables() {
        let mut idx = HEADER.to_vec();
        for i in 0..256u32 {
            idx.extend((if i < 3 { i } else { 3 }).to_be_bytes());
        }
        for n in 0..3u8 {
            idx.extend([n; 20]);
        }
        idx.extend([0u8; 3 * 4]); // crc32s
        idx.extend(12u32.to_be_bytes());
        idx.extend(1000u32.to_be_bytes());
        idx.extend(0x8000_0000u32.to_be_bytes());
        let far = 3u64 << 30;
        idx.extend(far.to_be_bytes());
        idx.extend([0u8; 40]);
        // Entries: 12..1000, 1000..far, far..trailer.
        assert_eq!(largest_entry(&idx, "p", far + 500 + 20), Ok(far - 1000));
        assert_eq!(largest_entry(&idx, "p", far + (4 << 30) + 20), Ok(4 << 30));
        // The 8-byte table cut off.
        let cut = &idx[..idx.len() - 40 - 4];
        assert!(largest_entry(cut, "p", far).is_err());
    }

    /// Against git's own account of a pack (`git verify-pack -v`: size in pack per object).
    #[test]
    fn largest_entry_matches_git() {
        use std::process::Command;
        let tmp = tempfile::tempdir().expect("tempdir");
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args(["-c", "user.name=a", "-c", "user.email=a@b", "-C"])
                .arg(tmp.path())
                .args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .expect("git runs");
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        git(&["init", "-q"]);
        // Incompressible bytes (xorshift), so that the blob is by far the largest entry.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(tmp.path().join("big.bin"), noise).expect("write");
        std::fs::write(tmp.path().join("small.txt"), "small\n").expect("write");
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "c"]);
        git(&["repack", "-a", "-d", "-q"]);
        let pack_dir = tmp.path().join(".git/objects/pack");
        let idx_path = std::fs::read_dir(&pack_dir)
            .expect("ls")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .expect("an idx");
        let pack_size = std::fs::metadata(idx_path.with_extension("pack"))
            .expect("pack")
            .len();
        let verify = git(&["verify-pack", "-v", idx_path.to_str().expect("utf-8")]);
        let git_largest = verify
            .lines()
            .filter_map(|line| line.split_whitespace().nth(3)?.parse::<u64>().ok())
            .max()
            .expect("sizes");
        let idx = std::fs::read(&idx_path).expect("read idx");
        assert_eq!(largest_entry(&idx, "p", pack_size), Ok(git_largest));
        assert!(git_largest > 200_000, "{git_largest}");
    }
}
