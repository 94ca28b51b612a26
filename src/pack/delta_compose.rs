//! Compose a delta chain into one delta against its root, without the objects.
//!
//! The thin completion ([`super::thin`]) must append a pushed delta's base, and the server's
//! compaction reuses deltas, so that base is often the top of a long chain (every edit-push of
//! a file adds a link under the next push's base, up to git's depth of 50). Copying the chain
//! raw costs `git index-pack` one delta application and one SHA-1 of the whole file per link;
//! resolving it costs the whole file in memory and a deflate of it. Composing costs neither:
//! a version is described as a list of pieces, each a range of the root or a run of bytes some
//! delta inserted, and each delta of the chain only rearranges that list. The result is one
//! delta from the root to the top, which the completion appends after the root's own stored
//! entry (copied raw): index-pack then resolves two entries whatever the chain's depth.
//!
//! Memory and time are bounded by [`MAX_PIECES`], [`MAX_VISITS`] and the inserted bytes' bound
//! the caller gives, never by the objects' sizes: a chain that would pass them is refused with
//! [`DeltaError::TooLarge`] (the caller then copies it raw).

use super::entries::{delta_varint, DeltaError};

/// The most pieces a version may be described by. A one-line edit adds two or three; a
/// hostile chain of deltas that each copy the whole of the one before many times over would
/// multiply them at every link, so the bound is what keeps both memory (24 bytes a piece) and
/// time (each piece is copied at most once per delta) in check.
pub const MAX_PIECES: usize = 1 << 16;

/// The most pieces a whole chain may visit. A delta of one copy instruction visits every
/// piece of the version it copies, so a long chain of tiny deltas over a version of many
/// pieces would cost [`MAX_PIECES`] steps per link; this keeps a chain's composition within
/// tens of milliseconds however long the chain (git's own chains stop at 50 links).
pub const MAX_VISITS: usize = 1 << 22;

/// The largest root a composed delta can copy from: a copy's offset has four bytes.
pub const MAX_ROOT: u64 = u32::MAX as u64;

/// git writes copies of at most 64 KiB (a size of 0 means 0x10000); so does the encoder.
const COPY_MAX: u64 = 0x10000;
/// An insert instruction carries 1 to 127 bytes.
const INSERT_MAX: usize = 0x7f;

/// A run of a version: `len` bytes of the root from `at`, or of the inserted bytes from `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    from_root: bool,
    at: u64,
    len: u64,
}

/// The top of a chain so far, as pieces of its root and of the bytes its deltas inserted.
#[derive(Debug)]
pub struct Composer {
    root_size: u64,
    pieces: Vec<Piece>,
    /// `ends[i]`: the offset in the version where piece `i` ends (for the copies' lookups).
    ends: Vec<u64>,
    inserted: Vec<u8>,
    /// Most bytes `inserted` may hold.
    max_inserted: usize,
    /// Pieces visited so far, against [`MAX_VISITS`].
    visits: usize,
}

impl Composer {
    /// The root itself: `root_size` bytes. The composed delta will insert at most
    /// `max_inserted` bytes. [`DeltaError::TooLarge`] for a root above [`MAX_ROOT`].
    pub fn new(root_size: u64, max_inserted: usize) -> Result<Composer, DeltaError> {
        if root_size > MAX_ROOT {
            return Err(DeltaError::TooLarge {
                declared: root_size,
            });
        }
        let pieces = if root_size > 0 {
            vec![Piece {
                from_root: true,
                at: 0,
                len: root_size,
            }]
        } else {
            Vec::new()
        };
        let ends = pieces.iter().map(|p| p.len).collect();
        Ok(Composer {
            root_size,
            pieces,
            ends,
            inserted: Vec::new(),
            max_inserted,
            visits: 0,
        })
    }

    /// Size of the version described now.
    pub fn size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Apply `delta` (gitformat-pack(5), "Deltified representation") to the version described
    /// now. [`DeltaError::Bad`] when it does not apply to it (wrong base size, a copy outside
    /// it, an instruction past its end, a result other than it declares); nothing changes
    /// then, nor on [`DeltaError::TooLarge`].
    pub fn apply(&mut self, delta: &[u8]) -> Result<(), DeltaError> {
        let varint = |i: &mut usize| delta_varint(delta, i).ok_or(DeltaError::Bad);
        let mut i = 0;
        if varint(&mut i)? != self.size() {
            return Err(DeltaError::Bad);
        }
        let declared = varint(&mut i)?;
        let mut out: Vec<Piece> = Vec::new();
        let mut made: u64 = 0;
        let inserted_before = self.inserted.len();
        let result = self.rearrange(delta, i, declared, &mut out, &mut made);
        if let Err(e) = result {
            self.inserted.truncate(inserted_before);
            return Err(e);
        }
        if made != declared {
            self.inserted.truncate(inserted_before);
            return Err(DeltaError::Bad);
        }
        let mut end = 0;
        self.ends = out
            .iter()
            .map(|p| {
                end += p.len;
                end
            })
            .collect();
        self.pieces = out;
        Ok(())
    }

    /// The instructions of `delta` from `i` on, as pieces into `out`.
    fn rearrange(
        &mut self,
        delta: &[u8],
        mut i: usize,
        declared: u64,
        out: &mut Vec<Piece>,
        made: &mut u64,
    ) -> Result<(), DeltaError> {
        let bad = DeltaError::Bad;
        while i < delta.len() {
            let op = delta[i];
            i += 1;
            if op & 0x80 != 0 {
                let (mut off, mut len) = (0u64, 0u64);
                for bit in 0..4 {
                    if op & (1 << bit) != 0 {
                        off |= u64::from(*delta.get(i).ok_or(bad)?) << (8 * bit);
                        i += 1;
                    }
                }
                for bit in 0..3 {
                    if op & (0x10 << bit) != 0 {
                        len |= u64::from(*delta.get(i).ok_or(bad)?) << (8 * bit);
                        i += 1;
                    }
                }
                if len == 0 {
                    len = COPY_MAX;
                }
                let end = off.checked_add(len).ok_or(bad)?;
                if end > self.size() || len > declared - *made {
                    return Err(bad);
                }
                self.visits += self.copy(off, end, out)?;
                if self.visits > MAX_VISITS {
                    return Err(DeltaError::TooLarge { declared });
                }
                *made += len;
            } else if op != 0 {
                let n = usize::from(op);
                let bytes = delta.get(i..i + n).ok_or(bad)?;
                i += n;
                if n as u64 > declared - *made {
                    return Err(bad);
                }
                if self.inserted.len() + n > self.max_inserted {
                    return Err(DeltaError::TooLarge { declared });
                }
                let at = self.inserted.len() as u64;
                self.inserted.extend_from_slice(bytes);
                push(
                    out,
                    Piece {
                        from_root: false,
                        at,
                        len: n as u64,
                    },
                )?;
                *made += n as u64;
            } else {
                return Err(bad);
            }
        }
        Ok(())
    }

    /// The pieces of the current version's bytes `start..end` (within it), onto `out`; how
    /// many pieces that visited.
    fn copy(&self, start: u64, end: u64, out: &mut Vec<Piece>) -> Result<usize, DeltaError> {
        // The first piece that ends after `start`.
        let mut k = self.ends.partition_point(|&e| e <= start);
        let mut at = start;
        let first = k;
        while at < end {
            let piece = self.pieces.get(k).ok_or(DeltaError::Bad)?;
            let piece_start = self.ends[k] - piece.len;
            let skip = at - piece_start;
            let len = (self.ends[k].min(end)) - at;
            push(
                out,
                Piece {
                    from_root: piece.from_root,
                    at: piece.at + skip,
                    len,
                },
            )?;
            at += len;
            k += 1;
        }
        Ok(k - first)
    }

    /// One delta from the root to the version described now, as git writes them: copies of
    /// at most 64 KiB, inserts of at most 127 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Vec::new();
        varint(self.root_size, &mut d);
        varint(self.size(), &mut d);
        for piece in &self.pieces {
            if piece.from_root {
                let mut at = piece.at;
                let end = piece.at + piece.len;
                while at < end {
                    let len = (end - at).min(COPY_MAX);
                    copy_op(at, len, &mut d);
                    at += len;
                }
            } else {
                let start = piece.at as usize;
                let bytes = &self.inserted[start..start + piece.len as usize];
                for chunk in bytes.chunks(INSERT_MAX) {
                    d.push(chunk.len() as u8);
                    d.extend_from_slice(chunk);
                }
            }
        }
        d
    }
}

/// `piece` onto `out`, joined to the last one when it continues it.
fn push(out: &mut Vec<Piece>, piece: Piece) -> Result<(), DeltaError> {
    if piece.len == 0 {
        return Ok(());
    }
    if let Some(last) = out.last_mut() {
        if last.from_root == piece.from_root && last.at + last.len == piece.at {
            last.len += piece.len;
            return Ok(());
        }
    }
    if out.len() >= MAX_PIECES {
        return Err(DeltaError::TooLarge {
            declared: MAX_PIECES as u64,
        });
    }
    out.push(piece);
    Ok(())
}

/// A copy of `len` (1 to 64 KiB) bytes from offset `at` (below 4 GiB) of the root.
fn copy_op(at: u64, len: u64, d: &mut Vec<u8>) {
    let op_at = d.len();
    d.push(0x80);
    for bit in 0..4 {
        let byte = (at >> (8 * bit)) as u8;
        if byte != 0 {
            d[op_at] |= 1 << bit;
            d.push(byte);
        }
    }
    // 0x10000 is written as no size bytes at all.
    let len = if len == COPY_MAX { 0 } else { len };
    for bit in 0..3 {
        let byte = (len >> (8 * bit)) as u8;
        if byte != 0 {
            d[op_at] |= 0x10 << bit;
            d.push(byte);
        }
    }
}

fn varint(mut v: u64, d: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            d.push(byte);
            return;
        }
        d.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests;
