//! Verify a received pack stream and write it into the repository with gix, in bounded memory.
//!
//! Pass one streams the pack: gix's entry iterator inflates every entry (checking it), computes
//! its CRC32 and the pack's trailer checksum, while the bytes go to a temporary file. Pass two
//! (`gix_pack::index::write_data_iter_to_stream`) resolves every object on all cores, hashing
//! each, and writes the idx. A corrupt or truncated pack fails and leaves nothing behind: both
//! files are registered temporary files (removed on error, drop or Ctrl-C) and only a complete,
//! verified `.pack` + `.idx` pair is renamed into place, `.keep` first.
//!
//! Why not `gix_pack::Bundle::write_to_directory`: it maps the whole pack for pass two and
//! every page it touches stays resident, so a 500 MiB pack peaked at 525 MiB RSS. Here pass two
//! reads the same map, but drops the pages it has used from the process every
//! [`RELEASE_EVERY`] bytes (they stay in the page cache), which keeps the peak near the objects
//! in flight: 62 MiB for the benchmark's 500 MiB pack of 5 MiB files. gix holds each object
//! whole, so packs with larger entries go to `git index-pack` ([`super::receive_git`]), which
//! streams big objects but hashes on one core (the 500 MiB clone took 0.94x `git daemon`
//! that way, 0.68x with gix).

use gix_tempfile::{handle::Writable, AutoRemove, ContainingDirectory, Handle};
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of pack resolved between two releases of the mapped pages.
const RELEASE_EVERY: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pack {pack} is corrupt or incomplete: {reason}")]
    Invalid { pack: String, reason: String },
    #[error("pack {pack} contains no objects")]
    Empty { pack: String },
    #[error("cannot store pack {pack}: {what}")]
    Io {
        pack: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a verified pack landed.
#[derive(Debug, Clone)]
pub struct Indexed {
    pub pack_path: Option<PathBuf>,
    pub idx_path: Option<PathBuf>,
    /// The `.keep` guarding the pack until git updates refs (`lock` in the protocol).
    pub keep_path: Option<PathBuf>,
    pub objects: u32,
}

type PackFile = Arc<Mutex<BufWriter<Handle<Writable>>>>;

/// Read a whole pack from `input`, verify it, and write it into `pack_dir`.
pub fn index(
    input: &mut dyn BufRead,
    pack_dir: &Path,
    pack: &str,
    interrupt: &AtomicBool,
) -> Result<Indexed, Error> {
    index_releasing(input, pack_dir, pack, interrupt, RELEASE_EVERY)
}

/// [`index`], releasing mapped pages every `release_every` bytes (tests release often).
fn index_releasing(
    input: &mut dyn BufRead,
    pack_dir: &Path,
    pack: &str,
    interrupt: &AtomicBool,
    release_every: u64,
) -> Result<Indexed, Error> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Io {
            pack: pack.to_owned(),
            what,
            source,
        }
    };
    let invalid = |e: &dyn std::error::Error| Error::Invalid {
        pack: pack.to_owned(),
        reason: with_causes(e),
    };
    let temp = |what: &str| {
        gix_tempfile::new(pack_dir, ContainingDirectory::Exists, AutoRemove::Tempfile)
            .map_err(io(what))
    };
    let data: PackFile = Arc::new(Mutex::new(BufWriter::with_capacity(
        1 << 20,
        temp("cannot create a temporary pack file")?,
    )));
    let mut idx = temp("cannot create a temporary idx file")?;

    let mut tee = std::io::BufReader::with_capacity(
        64 * 1024,
        Tee {
            input,
            file: Arc::clone(&data),
        },
    );
    let entries = gix_pack::data::input::BytesToEntriesIter::new_from_header(
        &mut tee,
        gix_pack::data::input::Mode::Verify,
        gix_pack::data::input::EntryDataMode::Crc32,
        gix::hash::Kind::Sha1,
    )
    .map_err(|e| invalid(&e))?;
    let pack_version = entries.version();
    // Where the last entry ends: the trailer follows, and nothing may follow the trailer.
    let mut end = gix_pack::data::header::SIZE as u64;
    let mut entries = entries.inspect(|entry| {
        if let Ok(entry) = entry {
            end = entry.pack_offset + u64::from(entry.header_size) + entry.compressed_size;
        }
    });
    let outcome = gix_pack::index::write_data_iter_to_stream(
        gix_pack::index::Version::V2,
        || map_pack(&data, release_every),
        &mut entries,
        None,
        &mut gix::progress::Discard,
        &mut idx,
        interrupt,
        gix::hash::Kind::Sha1,
        None,
        pack_version,
    )
    .map_err(|e| invalid(&e))?;
    drop(entries);
    if outcome.num_objects == 0 {
        return Err(Error::Empty {
            pack: pack.to_owned(),
        });
    }
    // The stream must end with the trailer: a longer one is not the pack the server indexed.
    let mut extra = 0;
    while !tee
        .fill_buf()
        .map_err(io("cannot read the pack"))?
        .is_empty()
    {
        let n = tee.buffer().len();
        extra += n;
        tee.consume(n);
        if extra > 1 << 20 {
            break;
        }
    }
    if extra > 0 {
        return Err(Error::Invalid {
            pack: pack.to_owned(),
            reason: format!(
                "{extra}{} bytes follow the trailer at offset {}",
                if extra > 1 << 20 { "+" } else { "" },
                end + 20
            ),
        });
    }
    drop(tee);
    let data = Arc::try_unwrap(data)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .expect("the pack file has one owner once its stream is read");
    let data = data
        .into_inner()
        .map_err(|e| io("cannot write the pack")(e.into_error()))?;
    idx.flush().map_err(io("cannot write the idx"))?;

    let hash = outcome.data_hash.to_hex().to_string();
    let path = |ext: &str| pack_dir.join(format!("pack-{hash}.{ext}"));
    if path("pack").is_file() {
        // Already here (same content, same name): nothing new, nothing to keep.
        return Ok(Indexed {
            pack_path: Some(path("pack")),
            idx_path: Some(path("idx")),
            keep_path: None,
            objects: outcome.num_objects,
        });
    }
    // `.keep` first, so that no repack takes the pack before git updates refs; the idx last,
    // since a pack is visible to git once its idx is.
    std::fs::write(path("keep"), b"").map_err(io("cannot write the .keep"))?;
    let persisted = data
        .persist(path("pack"))
        .map_err(|e| e.error)
        .and_then(|_| idx.persist(path("idx")).map_err(|e| e.error).map(drop));
    if let Err(source) = persisted {
        let _ = std::fs::remove_file(path("pack"));
        let _ = std::fs::remove_file(path("keep"));
        return Err(io("cannot move the pack into place")(source));
    }
    Ok(Indexed {
        pack_path: Some(path("pack")),
        idx_path: Some(path("idx")),
        keep_path: Some(path("keep")),
        objects: outcome.num_objects,
    })
}

/// Copies every byte read from `input` into the temporary pack file.
struct Tee<'a> {
    input: &'a mut dyn BufRead,
    file: PackFile,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("pack file lock poisoned"))?;
        file.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Gives the resolver closure the signature gix asks for (a slice borrowed from the map).
fn resolver<F>(f: F) -> F
where
    F: for<'r> Fn(gix_pack::data::EntryRange, &'r memmap2::Mmap) -> Option<&'r [u8]>,
{
    f
}

/// Pass two's view of the pack: the flushed temporary file, mapped read-only, and a resolver
/// that releases the mapped pages every `release_every` bytes it hands out.
#[allow(clippy::type_complexity, unsafe_code)]
fn map_pack(
    data: &PackFile,
    release_every: u64,
) -> std::io::Result<(
    impl for<'r> Fn(gix_pack::data::EntryRange, &'r memmap2::Mmap) -> Option<&'r [u8]> + Send + Clone,
    memmap2::Mmap,
)> {
    let mut file = data
        .lock()
        .map_err(|_| std::io::Error::other("pack file lock poisoned"))?;
    file.flush()?;
    let path = file.get_mut().with_mut(|f| f.path().to_owned())?;
    // SAFETY: the file is ours (a fresh temporary file nobody else writes) and is not written
    // again while mapped: the stream was read to its end before pass two starts.
    let map = unsafe { memmap2::Mmap::map(&std::fs::File::open(path)?)? };
    let handed_out = Arc::new(AtomicU64::new(0));
    let resolve = resolver(move |range, map| {
        let len = range.end.saturating_sub(range.start);
        let before = handed_out.fetch_add(len, Ordering::Relaxed);
        if before / release_every != (before + len) / release_every {
            // SAFETY: a read-only map of a file that does not change: pages dropped here are
            // read back from the page cache, with the same bytes, by whoever touches them next
            // (including slices other threads still hold).
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
        map.get(usize::try_from(range.start).ok()?..usize::try_from(range.end).ok()?)
    });
    Ok((resolve, map))
}

/// The error and its causes on one line: gix's top-level message ("an IO operation failed")
/// alone does not say whether the bytes were bad or the download was cut off.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::testing::{bare, git, pack_of_history};

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_pack_with_deltas_lands_verified_with_keep() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pack = pack_of_history(&tmp.path().join("src"), 12);
        let pack_dir = bare(&tmp.path().join("dst"));
        let flag = AtomicBool::new(false);
        // Release the mapped pages after every few KiB, so pass two re-reads them often.
        let indexed =
            index_releasing(&mut &pack[..], &pack_dir, "pack-x", &flag, 4096).expect("indexed");
        assert_eq!(
            indexed.objects,
            12 * 4,
            "commit, tree and two blobs per commit"
        );
        for path in [&indexed.pack_path, &indexed.idx_path, &indexed.keep_path] {
            assert!(path.as_ref().expect("path").exists());
        }
        assert_eq!(names(&pack_dir).len(), 3, "{:?}", names(&pack_dir));
        // git agrees with the idx and every object.
        let dst = tmp.path().join("dst");
        git(&dst, &["fsck", "--full", "--strict"]);
        let idx = indexed.idx_path.expect("idx");
        git(&dst, &["verify-pack", idx.to_str().expect("utf-8")]);
        assert_eq!(
            std::fs::read(indexed.pack_path.expect("pack")).expect("read"),
            pack
        );

        // The same pack again: already there, nothing new to keep.
        let again = index(&mut &pack[..], &pack_dir, "pack-x", &flag).expect("again");
        assert!(again.keep_path.is_none());
        assert_eq!(names(&pack_dir).len(), 3);
    }

    #[test]
    fn bad_packs_are_refused_and_leave_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pack = pack_of_history(&tmp.path().join("src"), 3);
        let pack_dir = bare(&tmp.path().join("dst"));
        let flag = AtomicBool::new(false);
        let mut flipped = pack.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        let mut junk = pack.clone();
        junk.extend_from_slice(b"junk");
        let cases: [(&str, &[u8], &str); 4] = [
            ("truncated", &pack[..pack.len() - 10], "pack-x"),
            ("flipped", &flipped, "pack-x"),
            ("junk", &junk, "follow the trailer"),
            ("empty stream", &[], "pack-x"),
        ];
        for (what, bytes, says) in cases {
            let err = index(&mut &bytes[..], &pack_dir, "pack-x", &flag).expect_err(what);
            assert!(err.to_string().contains(says), "{what}: {err}");
            assert!(
                names(&pack_dir).is_empty(),
                "{what}: {:?}",
                names(&pack_dir)
            );
        }
        // A pack of no objects is refused too.
        let mut none = b"PACK\0\0\0\x02\0\0\0\0".to_vec();
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(&none);
        let trailer = hasher.try_finalize().expect("sha1");
        none.extend_from_slice(trailer.as_bytes());
        assert!(matches!(
            index(&mut &none[..], &pack_dir, "pack-x", &flag),
            Err(Error::Empty { .. }) | Err(Error::Invalid { .. })
        ));
        assert!(names(&pack_dir).is_empty(), "{:?}", names(&pack_dir));
    }
}
