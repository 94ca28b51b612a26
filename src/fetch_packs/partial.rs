//! What survives a cut pack download: `$GIT_DIR/hypha/partial/<pack>-<size>.part`, the first
//! bytes of a large pack as they came, so that the next fetch asks only for the rest.
//!
//! A pack's name is the checksum of its bytes, so a partial of the same name and size is a
//! prefix of the same pack whichever remote listed it (the directory is shared by all remotes).
//! This module keeps the file; it does not judge its bytes: the indexer verifies the whole
//! pack, and a partial it refuses is removed by the caller. Bytes are written unbuffered, so a
//! Ctrl-C (whose handler removes only registered tempfiles, never these) or a kill leaves what
//! was received. Two fetches of one repository at once do not share a partial: the file is
//! locked while in use, and the second fetch downloads the pack whole.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Packs from this size on are saved as they come: a cut download of a smaller pack costs
/// seconds to repeat, not worth a file per pack.
pub const RESUME_MIN: u64 = 64 << 20;

/// A partial untouched for this long is removed by the next fetch: its pack is likely gone
/// (merged by a compaction) or no longer wanted.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The threshold: [`RESUME_MIN`], or bytes from `HYPHA_RESUME_MIN_BYTES` (for tests, which
/// cannot push 64 MiB packs cheaply); anything unparsable is the default.
pub fn resume_min(setting: Option<&str>) -> u64 {
    setting
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(RESUME_MIN)
}

/// [`resume_min`] of this process's environment.
pub fn resume_min_from_env() -> u64 {
    resume_min(std::env::var("HYPHA_RESUME_MIN_BYTES").ok().as_deref())
}

/// Where partials of the repository at `git_dir` live.
pub fn dir(git_dir: &Path) -> PathBuf {
    git_dir.join("hypha").join("partial")
}

/// The file name of the partial of `name` (`pack-<40 hex>`, checked: it becomes a path) of
/// `size` bytes.
fn file_name(name: &str, size: u64) -> Option<String> {
    crate::names::is_valid_pack_name(name).then(|| format!("{name}-{size}.part"))
}

/// Whether `file` is a partial's name, of any pack and size.
fn is_partial_name(file: &str) -> bool {
    let Some((name, size)) = file
        .strip_suffix(".part")
        .and_then(|stem| stem.rsplit_once('-'))
    else {
        return false;
    };
    size.parse::<u64>().is_ok() && crate::names::is_valid_pack_name(name)
}

/// Remove from `dir` what no fetch will resume: partials older than `max_age` (by the time of
/// their last write) and files that are no partial at all. Best effort.
pub fn prune(dir: &Path, now: SystemTime, max_age: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if old || !is_partial_name(&name.to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The partial of one pack, locked by this process while it lives.
#[derive(Debug)]
pub struct Partial {
    path: PathBuf,
    /// Opened for appending, and locked.
    file: File,
    size: u64,
}

impl Partial {
    /// The partial of `name` (`size` bytes) in `dir`, created empty when there is none;
    /// `None` when `name` is no pack name or another process is using that partial. A file
    /// longer than the pack cannot be its prefix: it is emptied.
    pub fn open(dir: &Path, name: &str, size: u64) -> std::io::Result<Option<Partial>> {
        let Some(file_name) = file_name(name, size) else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file_name);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let partial = Partial { path, file, size };
        if partial.saved()? > size {
            partial.reset()?;
        }
        Ok(Some(partial))
    }

    /// How many bytes of the pack are saved.
    pub fn saved(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Forget what is saved (the store would not resume, or the bytes were bad).
    pub fn reset(&self) -> std::io::Result<()> {
        self.file.set_len(0)
    }

    /// Done with it: the pack is in, or its bytes were refused.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// A reader of the saved bytes (the first `saved`), then of `rest`, which must bring
    /// exactly the remaining `size - saved`; what `rest` brings is appended to the partial.
    /// `cut` is set when `rest` fails or ends early: the bytes saved so far are good to
    /// resume from. `rest` bringing more is an error too, but not a cut.
    pub fn reader<R: Read>(
        &self,
        saved: u64,
        rest: R,
        cut: Arc<AtomicBool>,
    ) -> std::io::Result<Resumed<R>> {
        Ok(Resumed {
            saved: File::open(&self.path)?.take(saved),
            rest,
            out: Some(self.file.try_clone()?),
            left: self.size.saturating_sub(saved),
            cut,
        })
    }
}

/// See [`Partial::reader`].
pub struct Resumed<R> {
    saved: std::io::Take<File>,
    rest: R,
    /// Where new bytes go; `None` after a failed write (a gap would make the partial a lie).
    out: Option<File>,
    left: u64,
    cut: Arc<AtomicBool>,
}

impl<R: Read> Read for Resumed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.saved.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        // One byte more than is left: a store sending too much shows here.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = match self.rest.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) => {
                self.cut.store(true, Ordering::SeqCst);
                return Err(e);
            }
        };
        if n == 0 && self.left > 0 {
            self.cut.store(true, Ordering::SeqCst);
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the download ended {} bytes short", self.left),
            ));
        }
        if n as u64 > self.left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the store sent more bytes than the pack holds",
            ));
        }
        self.left -= n as u64;
        if let Some(out) = &mut self.out {
            if out.write_all(&buf[..n]).is_err() {
                // A partial prefix of this chunk may be written: still a prefix of the pack.
                self.out = None;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "pack-0123456789abcdef0123456789abcdef01234567";

    fn read_all(r: impl Read) -> (Vec<u8>, std::io::Result<()>) {
        let mut out = Vec::new();
        let mut r = r;
        let mut buf = [0u8; 7];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, Ok(())),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    #[test]
    fn threshold_setting() {
        assert_eq!(resume_min(None), RESUME_MIN);
        assert_eq!(resume_min(Some("1000")), 1000);
        assert_eq!(resume_min(Some(" 0 ")), 0);
        for bad in ["", "x", "-1", "1.5"] {
            assert_eq!(resume_min(Some(bad)), RESUME_MIN, "{bad:?}");
        }
    }

    #[test]
    fn only_pack_names_become_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            "../pack-x",
            "pack-../../etc",
            "pack-0123",
            &NAME.to_uppercase(),
        ] {
            assert!(
                Partial::open(dir.path(), bad, 10).expect("open").is_none(),
                "{bad}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
        assert!(is_partial_name(&format!("{NAME}-10.part")));
        for bad in [
            format!("{NAME}.part"),
            format!("{NAME}-x.part"),
            format!("{NAME}-10"),
        ] {
            assert!(!is_partial_name(&bad), "{bad}");
        }
    }

    #[test]
    fn a_cut_download_resumes_with_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pack: Vec<u8> = (0..100u8).collect();
        let p = Partial::open(dir.path(), NAME, 100)
            .expect("open")
            .expect("free");
        assert_eq!(p.saved().expect("len"), 0);
        // The first download brings 40 bytes and fails.
        let cut = Arc::new(AtomicBool::new(false));
        let failing = (&pack[..40]).chain(FailingReader);
        let (got, end) = read_all(p.reader(0, failing, cut.clone()).expect("reader"));
        assert_eq!(got, &pack[..40]);
        assert!(end.is_err() && cut.load(Ordering::SeqCst));
        drop(p);

        // The next one reads those 40 from disk and the other 60 from the store.
        let p = Partial::open(dir.path(), NAME, 100)
            .expect("open")
            .expect("free");
        assert_eq!(p.saved().expect("len"), 40);
        let cut = Arc::new(AtomicBool::new(false));
        let (got, end) = read_all(p.reader(40, &pack[40..], cut.clone()).expect("reader"));
        end.expect("complete");
        assert_eq!(got, pack);
        assert!(!cut.load(Ordering::SeqCst));
        assert_eq!(p.saved().expect("len"), 100);
        p.remove();
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn a_short_or_long_answer_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Partial::open(dir.path(), NAME, 10)
            .expect("open")
            .expect("free");
        let cut = Arc::new(AtomicBool::new(false));
        let (got, end) = read_all(p.reader(0, &[1u8; 6][..], cut.clone()).expect("reader"));
        assert_eq!(got.len(), 6);
        assert_eq!(
            end.expect_err("short").kind(),
            std::io::ErrorKind::UnexpectedEof
        );
        assert!(cut.load(Ordering::SeqCst), "short is a cut: resumable");

        p.reset().expect("reset");
        let cut = Arc::new(AtomicBool::new(false));
        let (_, end) = read_all(p.reader(0, &[1u8; 11][..], cut.clone()).expect("reader"));
        assert_eq!(
            end.expect_err("long").kind(),
            std::io::ErrorKind::InvalidData
        );
        assert!(!cut.load(Ordering::SeqCst), "too much is no cut");
        assert!(p.saved().expect("len") <= 10, "never more than the pack");
    }

    #[test]
    fn a_partial_longer_than_its_pack_is_emptied_and_one_in_use_is_not_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(format!("{NAME}-10.part")), [0u8; 20]).expect("write");
        let p = Partial::open(dir.path(), NAME, 10)
            .expect("open")
            .expect("free");
        assert_eq!(p.saved().expect("len"), 0);
        assert!(
            Partial::open(dir.path(), NAME, 10).expect("open").is_none(),
            "locked"
        );
        drop(p);
        assert!(
            Partial::open(dir.path(), NAME, 10).expect("open").is_some(),
            "unlocked"
        );
    }

    #[test]
    fn prune_removes_old_partials_and_strangers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keep = dir.path().join(format!("{NAME}-10.part"));
        std::fs::write(&keep, b"abc").expect("write");
        std::fs::write(dir.path().join("junk"), b"x").expect("write");
        let now = SystemTime::now();
        prune(dir.path(), now, MAX_AGE);
        assert!(keep.exists());
        assert!(!dir.path().join("junk").exists());
        prune(dir.path(), now + MAX_AGE + Duration::from_secs(60), MAX_AGE);
        assert!(!keep.exists(), "older than the limit");
        prune(&dir.path().join("missing"), now, MAX_AGE);
    }

    struct FailingReader;

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut",
            ))
        }
    }
}
