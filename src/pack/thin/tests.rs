//! Thin packs made by real git, completed here, checked by git (`index-pack` without
//! `--fix-thin`, `verify-pack`) and against the idx git writes for the completed pack.

use super::*;
use crate::pack::idx_file;
use crate::pack::testing::git;
use gix::ObjectId;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Live packs and a thin pack on local disk.
struct Files {
    thin: PathBuf,
    live: Vec<(PathBuf, Vec<idx_file::Entry>)>,
}

fn read_range(path: &Path, range: Range<u64>) -> io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(range.start))?;
    let mut buf = Vec::new();
    f.take(range.end - range.start).read_to_end(&mut buf)?;
    Ok(buf)
}

impl Source for Files {
    fn read(&mut self, pack: Option<usize>, range: Range<u64>) -> io::Result<bytes::Bytes> {
        match pack {
            None => read_range(&self.thin, range),
            Some(n) => read_range(&self.live[n].0, range),
        }
        .map(bytes::Bytes::from)
    }
    fn locate(&mut self, id: &ObjectId) -> io::Result<Option<Located>> {
        for (n, (path, entries)) in self.live.iter().enumerate() {
            if let Some(e) = entries.iter().find(|e| e.id == *id) {
                return Ok(Some(Located {
                    pack: n,
                    offset: e.offset,
                    pack_size: std::fs::metadata(path)?.len(),
                }));
            }
        }
        Ok(None)
    }
    fn id_at(&mut self, pack: usize, offset: u64) -> io::Result<Option<ObjectId>> {
        Ok(self.live[pack]
            .1
            .iter()
            .find(|e| e.offset == offset)
            .map(|e| e.id))
    }
    fn name(&self, pack: usize) -> String {
        format!("live{pack}")
    }
}

/// A thin pack of `revs` (`^` lines name what the receiver has).
fn pack_objects(dir: &Path, revs: &str) -> Vec<u8> {
    crate::pack::testing::pack_objects(dir, &["--thin"], revs)
}

/// The idx of a thin pack as the helper makes it: git completes a copy locally, and the
/// entries inside the thin part are kept.
fn thin_idx(repo: &Path, thin: &Path, tmp: &Path) -> Vec<u8> {
    let full = tmp.join("local-full.pack");
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["index-pack", "--stdin", "--fix-thin"])
        .arg(&full)
        .stdin(std::fs::File::open(thin).expect("thin"))
        .output()
        .expect("index-pack");
    assert!(out.status.success(), "{out:?}");
    let idx = std::fs::read(full.with_extension("idx")).expect("idx");
    let thin_bytes = std::fs::read(thin).expect("thin");
    let data_end = thin_bytes.len() as u64 - 20;
    let mut entries: Vec<_> = idx_file::entries(&idx, "full")
        .expect("entries")
        .into_iter()
        .filter(|e| e.offset < data_end)
        .collect();
    let mut trailer = [0u8; 20];
    trailer.copy_from_slice(&thin_bytes[data_end as usize..]);
    idx_file::write(&mut entries, &trailer, "thin").expect("write idx")
}

/// The packs of `repo` with their idx entries.
fn live_packs(repo: &Path) -> Vec<(PathBuf, Vec<idx_file::Entry>)> {
    std::fs::read_dir(repo.join(".git/objects/pack"))
        .expect("ls")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .map(|idx| {
            let entries =
                idx_file::entries(&std::fs::read(&idx).expect("idx"), "live").expect("entries");
            (idx.with_extension("pack"), entries)
        })
        .collect()
}

/// git's `index-pack` (no `--fix-thin`) of the completed pack `out`: it must accept it and
/// write the very idx `done` holds. Returns the path of git's idx.
fn git_indexes_as_written(tmp: &Path, out: &Path, done: &Completed) -> PathBuf {
    let check = tmp.join("check");
    crate::pack::testing::bare(&check);
    let pack = check.join("c.pack");
    std::fs::copy(out, &pack).expect("copy");
    let indexed = Command::new("git")
        .arg("index-pack")
        .arg(&pack)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("index-pack");
    assert!(indexed.status.success(), "{indexed:?}");
    assert_eq!(
        String::from_utf8_lossy(&indexed.stdout).trim(),
        done.name.trim_start_matches("pack-")
    );
    let idx = pack.with_extension("idx");
    assert_eq!(std::fs::read(&idx).expect("idx"), done.idx);
    idx
}

/// A repository with `a.txt` grown over `rounds` commits, packed (OFS_DELTA chains), then one
/// line edited: returns (repo, thin pack path, live packs).
fn setup(tmp: &Path, rounds: usize) -> (PathBuf, PathBuf, Vec<(PathBuf, Vec<idx_file::Entry>)>) {
    let repo = tmp.join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    let mut text = String::new();
    for i in 0..rounds {
        for n in 0..300 {
            text.push_str(&format!("line {n} of round {i}\n"));
        }
        std::fs::write(repo.join("a.txt"), &text).expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("c{i}")]);
    }
    git(&repo, &["repack", "-adq", "--depth=50"]);
    let live = live_packs(&repo);
    std::fs::write(repo.join("a.txt"), text.replacen("line 7 ", "LINE 7 ", 1)).expect("edit");
    git(&repo, &["commit", "-q", "-am", "edit"]);
    let thin = tmp.join("thin.pack");
    std::fs::write(&thin, pack_objects(&repo, "HEAD\n^HEAD~1\n")).expect("thin");
    (repo, thin, live)
}

fn run(files: &mut Files, idx: &[u8]) -> Result<(Completed, tempfile::NamedTempFile), Error> {
    run_with(files, Some(idx))
}

fn run_with(
    files: &mut Files,
    idx: Option<&[u8]>,
) -> Result<(Completed, tempfile::NamedTempFile), Error> {
    let size = std::fs::metadata(&files.thin).expect("thin").len();
    let mut out = tempfile::NamedTempFile::new().expect("temp");
    let done = complete(files, size, idx, out.as_file_mut())?;
    Ok((done, out))
}

#[test]
fn completes_a_thin_pack_that_git_accepts_as_is() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (repo, thin, live) = setup(tmp.path(), 6);
    let idx = thin_idx(&repo, &thin, tmp.path());
    let mut files = Files { thin, live };
    let (done, out) = run(&mut files, &idx).expect("complete");
    assert!(done.appended >= 1, "the edited blob's base is appended");
    assert_eq!(
        done.pack_size,
        std::fs::metadata(out.path()).expect("out").len()
    );

    // git reads it without --fix-thin, and writes the very idx we wrote.
    git_indexes_as_written(tmp.path(), out.path(), &done);
}

/// Without the thin pack's idx (an inline thin pack the helper did not index) the same pack
/// comes out, with no idx: git indexes it as it stands, to the idx made with the thin idx.
#[test]
fn completes_a_thin_pack_without_its_idx_to_the_same_pack() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (repo, thin, live) = setup(tmp.path(), 6);
    let idx = thin_idx(&repo, &thin, tmp.path());
    let mut files = Files { thin, live };
    let (with, _) = run(&mut files, &idx).expect("complete with the idx");
    let (without, out) = run_with(&mut files, None).expect("complete without the idx");
    assert!(without.idx.is_empty(), "no idx made");
    assert_eq!(
        (&without.name, without.pack_size, without.appended),
        (&with.name, with.pack_size, with.appended)
    );
    let git_idx = git_indexes_as_written(tmp.path(), out.path(), &with);
    assert!(git_idx.exists());
    // A thin pack with bytes cut off is still refused without an idx to compare against.
    let good = std::fs::read(&files.thin).expect("thin");
    std::fs::write(&files.thin, &good[..good.len() - 7]).expect("truncate");
    assert!(run_with(&mut files, None).is_err(), "a truncated thin pack");
}

#[test]
fn missing_base_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (repo, thin, _) = setup(tmp.path(), 2);
    let idx = thin_idx(&repo, &thin, tmp.path());
    let mut files = Files {
        thin,
        live: Vec::new(),
    };
    let err = run(&mut files, &idx).expect_err("no bases");
    assert!(matches!(err, Error::MissingBase { .. }), "{err}");
    assert!(err.to_string().starts_with("missing necessary objects"));
}

#[test]
fn corrupt_truncated_and_mismatched_uploads_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (repo, thin, live) = setup(tmp.path(), 2);
    let idx = thin_idx(&repo, &thin, tmp.path());
    let good = std::fs::read(&thin).expect("thin");
    let bad = tmp.path().join("bad.pack");
    let mut files = Files {
        thin: bad.clone(),
        live,
    };

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    std::fs::write(&bad, &flipped).expect("write");
    let err = run(&mut files, &idx).expect_err("flipped byte");
    assert!(
        matches!(
            err,
            Error::Corrupt { .. } | Error::Checksum | Error::IdxMismatch { .. }
        ),
        "{err}"
    );

    std::fs::write(&bad, &good[..good.len() - 30]).expect("write");
    let err = run(&mut files, &idx).expect_err("truncated");
    assert!(
        matches!(
            err,
            Error::Truncated { .. } | Error::Corrupt { .. } | Error::Checksum
        ),
        "{err}"
    );

    std::fs::write(&bad, &good).expect("write");
    let mut other = idx.clone();
    // A CRC32 of the first entry changed: the idx no longer describes this pack.
    let count = idx_file::object_ids(&idx, "t").expect("ids").len();
    other[8 + 1024 + count * 20] ^= 1;
    let err = run(&mut files, &other).expect_err("idx mismatch");
    assert!(matches!(err, Error::IdxMismatch { .. }), "{err}");

    let (done, _) = run(&mut files, &idx).expect("the good pack still completes");
    assert!(done.appended >= 1);
}

/// A base that is itself a delta in its stored pack (a file that shrank: git deltifies the
/// smaller, newer version against the larger one) is appended whole, resolved, as index-pack
/// --fix-thin appends it: one entry, no chain, and git reads the result as it is.
#[test]
fn a_deltified_base_is_appended_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    let mut text = String::new();
    for i in 0..4 {
        for n in 0..300 {
            text.push_str(&format!("line {n} of round {i}\n"));
        }
        std::fs::write(repo.join("a.txt"), &text).expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("c{i}")]);
    }
    let half = &text[..text.len() / 2];
    std::fs::write(repo.join("a.txt"), half).expect("shrink");
    git(&repo, &["commit", "-q", "-am", "shrink"]);
    git(&repo, &["repack", "-adfq", "--depth=50"]);
    let live = live_packs(&repo);
    let base = |rev: &str| {
        let out = Command::new("git")
            .args(["rev-parse", rev])
            .current_dir(&repo)
            .output()
            .expect("rev-parse");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let shrunk = base("HEAD:a.txt");
    let stored = Command::new("git")
        .args(["verify-pack", "-v"])
        .arg(live[0].0.with_extension("idx"))
        .output()
        .expect("verify-pack");
    let stored = String::from_utf8_lossy(&stored.stdout).into_owned();
    let line = |listing: &str, id: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(id))
            .map(|l| l.split_whitespace().count())
    };
    assert_eq!(
        line(&stored, &shrunk),
        Some(7),
        "the shrunk file is stored as a delta\n{stored}"
    );
    std::fs::write(repo.join("a.txt"), half.replacen("line 7 ", "LINE 7 ", 1)).expect("edit");
    git(&repo, &["commit", "-q", "-am", "edit"]);
    let thin = tmp.path().join("thin.pack");
    std::fs::write(&thin, pack_objects(&repo, "HEAD\n^HEAD~1\n")).expect("thin");
    let idx = thin_idx(&repo, &thin, tmp.path());
    let mut files = Files { thin, live };
    let (done, out) = run(&mut files, &idx).expect("complete");
    assert!(done.appended >= 1);

    let idx = git_indexes_as_written(tmp.path(), out.path(), &done);
    let listing = Command::new("git")
        .args(["verify-pack", "-v"])
        .arg(&idx)
        .output()
        .expect("verify-pack");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert_eq!(
        line(&listing, &shrunk),
        Some(5),
        "the base is whole in the completed pack\n{listing}"
    );
}

/// A base deep in a chain of a file over [`WHOLE_MAX`] (what the server's compaction makes of
/// repeated edit-pushes: each version a delta on the one before) goes in as the chain's root,
/// copied as stored, and one delta on it composed from the chain: git resolves two entries
/// for it, not the chain, and reads the completed pack as it is, with or without the idx.
#[test]
fn a_long_chain_is_appended_as_its_root_and_one_composed_delta() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (repo, srv) = (tmp.path().join("repo"), tmp.path().join("srv"));
    for dir in [&repo, &srv] {
        std::fs::create_dir_all(dir).expect("mkdir");
        git(dir, &["init", "-q"]);
    }
    let mut rows: Vec<String> = (0..70_000u64)
        .map(|n| format!("{n},{},{}\n", n * 7919 % 10007, n * 104_729 % 1_000_003))
        .collect();
    let mut blobs = Vec::new();
    for round in 0..7 {
        rows[1000 + round * 5000] = format!("edited in round {round}\n");
        std::fs::write(repo.join("big.csv"), rows.concat()).expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("v{round}")]);
        blobs.push(rev_parse(&repo, "HEAD:big.csv"));
        // What the server stores of edit-pushes: each version a delta on the one before (the
        // writer's thin pack), completed, then merged reusing those deltas.
        let revs = if round == 0 {
            "HEAD\n"
        } else {
            "HEAD\n^HEAD~1\n"
        };
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&srv)
            .args(["index-pack", "--stdin", "--fix-thin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("index-pack");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&pack_objects(&repo, revs))
            .expect("pack");
        assert!(child.wait().expect("index-pack").success());
        git(
            &srv,
            &["update-ref", "refs/heads/main", &rev_parse(&repo, "HEAD")],
        );
        git(&srv, &["repack", "-adq", "--depth=50"]);
    }
    let live = live_packs(&srv);
    let listing = |idx: &Path| {
        let out = Command::new("git")
            .args(["verify-pack", "-v"])
            .arg(idx)
            .output()
            .expect("verify-pack");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // (depth, base) of `id` in a verify-pack listing; depth 0 for a whole object.
    let depth = |listing: &str, id: &str| -> Option<(usize, String)> {
        let line = listing.lines().find(|l| l.starts_with(id))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        Some(match fields.len() {
            7 => (fields[5].parse().expect("depth"), fields[6].to_owned()),
            _ => (0, String::new()),
        })
    };
    let stored = listing(&live[0].0.with_extension("idx"));
    let base = blobs.last().expect("versions");
    let (stored_depth, _) = depth(&stored, base).expect("the base is stored");
    assert!(
        stored_depth > LONG_CHAIN,
        "the base is deep in a chain\n{stored}"
    );
    let (root_depth, _) = depth(&stored, &blobs[0]).expect("the root is stored");
    assert_eq!(root_depth, 0, "the oldest version is the root\n{stored}");

    rows[2].push('!');
    std::fs::write(repo.join("big.csv"), rows.concat()).expect("edit");
    git(&repo, &["commit", "-q", "-am", "edit"]);
    let thin = tmp.path().join("thin.pack");
    std::fs::write(&thin, pack_objects(&repo, "HEAD\n^HEAD~1\n")).expect("thin");
    let idx = thin_idx(&repo, &thin, tmp.path());
    let mut files = Files { thin, live };
    let (done, out) = run(&mut files, &idx).expect("complete");

    let git_idx = git_indexes_as_written(tmp.path(), out.path(), &done);
    let completed = listing(&git_idx);
    assert_eq!(
        depth(&completed, base),
        Some((1, blobs[0].clone())),
        "the base is one delta on the root\n{completed}"
    );
    assert_eq!(depth(&completed, &blobs[0]), Some((0, String::new())));
    for middle in &blobs[1..blobs.len() - 1] {
        assert_eq!(depth(&completed, middle), None, "{middle} is not copied");
    }

    // Without the idx: the same bytes (the server's git index-pack names the ids).
    let (bare, bare_out) = run_with(&mut files, None).expect("complete without the idx");
    assert_eq!(bare.name, done.name);
    assert_eq!(
        std::fs::read(bare_out.path()).expect("read"),
        std::fs::read(out.path()).expect("read")
    );
}

fn rev_parse(repo: &Path, rev: &str) -> String {
    let out = Command::new("git")
        .args(["rev-parse", rev])
        .current_dir(repo)
        .output()
        .expect("rev-parse");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Raw pack entries, for shapes git never writes but a hostile writer can store.
mod hostile {
    use super::*;

    fn header(kind: u8, mut size: u64) -> Vec<u8> {
        let mut out = vec![(kind << 4) | (size & 0x0f) as u8];
        size >>= 4;
        while size > 0 {
            *out.last_mut().expect("a byte") |= 0x80;
            out.push((size & 0x7f) as u8);
            size >>= 7;
        }
        out
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut z =
            gix_zlib::stream::deflate::Write::new(Vec::new(), gix_zlib::Compression::DEFAULT);
        z.write_all(data).and_then(|()| z.flush()).expect("deflate");
        z.into_inner()
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// A pack of `entries` (header, count, entries, SHA-1 trailer), with each entry's offset.
    fn pack(entries: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
        let mut out = b"PACK\0\0\0\x02".to_vec();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        let mut offsets = Vec::new();
        for e in entries {
            offsets.push(out.len() as u64);
            out.extend_from_slice(e);
        }
        let mut h = gix_hash::hasher(gix_hash::Kind::Sha1);
        h.update(&out);
        out.extend_from_slice(h.try_finalize().expect("sha1").as_slice());
        (out, offsets)
    }

    /// Issue 21: a stored 64 KiB blob and an OFS_DELTA of 65,536 one-byte copy ops against it
    /// (each copies 64 KiB: 4 GiB from 715 bytes), then a thin pack whose REF_DELTA names
    /// that delta. Completion aborted the server (`memory allocation of 4294967296 bytes
    /// failed`); now a delta never builds more than it declares, and a declared result
    /// above the whole-object bound is copied raw instead of built.
    #[test]
    fn an_expanding_delta_in_a_stored_pack_neither_aborts_nor_allocates() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let blob = vec![b'x'; 0x10000];
        let blob_id =
            gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::object::Kind::Blob, &blob)
                .expect("hash");
        let fake_id = [0xab; 20];
        for declared in [100u64, 1 << 32] {
            let mut delta = Vec::new();
            varint(blob.len() as u64, &mut delta);
            varint(declared, &mut delta);
            delta.extend(std::iter::repeat_n(0x80u8, 65_536));
            let blob_entry = [header(3, blob.len() as u64), deflate(&blob)].concat();
            let distance = blob_entry.len() as u64;
            // OFS_DELTA's distance, git's offset encoding (one byte: below 128).
            assert!(distance < 0x80 * 0x80);
            let mut ofs = Vec::new();
            let mut d = distance;
            let mut bytes = vec![(d & 0x7f) as u8];
            d >>= 7;
            while d > 0 {
                d -= 1;
                bytes.push(0x80 | (d & 0x7f) as u8);
                d >>= 7;
            }
            bytes.reverse();
            ofs.extend(bytes);
            let delta_entry = [header(6, delta.len() as u64), ofs, deflate(&delta)].concat();
            let (live, offsets) = pack(&[blob_entry, delta_entry]);
            let live_path = tmp.path().join(format!("live-{declared}.pack"));
            std::fs::write(&live_path, &live).expect("write");

            let mut small = Vec::new();
            varint(declared, &mut small);
            varint(1, &mut small);
            small.extend_from_slice(&[1, b'!']);
            let thin_entry = [
                header(7, small.len() as u64),
                fake_id.to_vec(),
                deflate(&small),
            ]
            .concat();
            let crc = crc32fast::hash(&thin_entry);
            let (thin, thin_offsets) = pack(&[thin_entry]);
            let thin_path = tmp.path().join(format!("thin-{declared}.pack"));
            std::fs::write(&thin_path, &thin).expect("write");
            let mut checksum = [0u8; 20];
            checksum.copy_from_slice(&thin[thin.len() - 20..]);
            let idx = idx_file::write(
                &mut [idx_file::Entry {
                    id: ObjectId::from([0xcd; 20]),
                    crc32: crc,
                    offset: thin_offsets[0],
                }],
                &checksum,
                "thin",
            )
            .expect("idx");
            let mut files = Files {
                thin: thin_path,
                live: vec![(
                    live_path,
                    vec![
                        idx_file::Entry {
                            id: blob_id,
                            crc32: 0,
                            offset: offsets[0],
                        },
                        idx_file::Entry {
                            id: ObjectId::from(fake_id),
                            crc32: 0,
                            offset: offsets[1],
                        },
                    ],
                )],
            };
            // Refused (the delta builds more than it declares, or the thin delta does not
            // apply to what the chain really is) or completed raw: never an abort.
            if let Err(e) = run(&mut files, &idx) {
                let text = e.to_string();
                assert!(text.len() < 400, "one line: {text}");
            }
        }
    }
}

/// [`Files`] that knows where each live entry ends, as the server's source does from the
/// idx, and counts the range reads of live packs (each a round trip to S3).
struct Counted {
    files: Files,
    live_reads: usize,
    ends: bool,
}

impl Source for Counted {
    fn read(&mut self, pack: Option<usize>, range: Range<u64>) -> io::Result<bytes::Bytes> {
        self.live_reads += usize::from(pack.is_some());
        self.files.read(pack, range)
    }
    fn locate(&mut self, id: &ObjectId) -> io::Result<Option<Located>> {
        self.files.locate(id)
    }
    fn id_at(&mut self, pack: usize, offset: u64) -> io::Result<Option<ObjectId>> {
        self.files.id_at(pack, offset)
    }
    fn entry_end(&mut self, pack: usize, offset: u64) -> io::Result<Option<u64>> {
        if !self.ends {
            return Ok(None);
        }
        let (path, entries) = &self.files.live[pack];
        let trailer = std::fs::metadata(path)?.len() - 20;
        Ok(Some(
            entries
                .iter()
                .map(|e| e.offset)
                .filter(|&o| o > offset)
                .min()
                .unwrap_or(trailer),
        ))
    }
    fn name(&self, pack: usize) -> String {
        self.files.name(pack)
    }
}

/// A base of about 1 MiB compressed is copied in one range read after its header's, where
/// reads growing from 64 KiB took five one after another; the result is the same pack.
#[test]
fn a_large_base_is_read_in_one_range_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    // Digits that do not compress much: a base of 2 MiB, about 1 MiB deflated.
    let mut x: u64 = 25;
    let mut text = String::new();
    for n in 0..32_768 {
        let mut line = format!("{n}");
        while line.len() < 63 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            line.push(char::from(b'0' + (x >> 60) as u8 % 10));
        }
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(repo.join("data.csv"), &text).expect("write");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    git(&repo, &["repack", "-adq"]);
    let live = live_packs(&repo);
    std::fs::write(repo.join("data.csv"), text.replacen("7", "8", 3)).expect("edit");
    git(&repo, &["commit", "-q", "-am", "edit"]);
    let thin = tmp.path().join("thin.pack");
    std::fs::write(&thin, pack_objects(&repo, "HEAD\n^HEAD~1\n")).expect("thin");
    let idx = thin_idx(&repo, &thin, tmp.path());
    let size = std::fs::metadata(&thin).expect("thin").len();

    let mut outcomes = Vec::new();
    for ends in [false, true] {
        let mut src = Counted {
            files: Files {
                thin: thin.clone(),
                live: live.clone(),
            },
            live_reads: 0,
            ends,
        };
        let mut out = tempfile::NamedTempFile::new().expect("temp");
        let done = complete(&mut src, size, Some(&idx), out.as_file_mut()).expect("complete");
        git_indexes_as_written(tmp.path(), out.path(), &done);
        outcomes.push((done.name, src.live_reads));
    }
    let ((chunked_name, chunked), (whole_name, whole)) = (&outcomes[0], &outcomes[1]);
    assert_eq!(chunked_name, whole_name, "the same completed pack");
    assert!(*chunked >= 4, "growing reads: {chunked}");
    assert!(
        *whole <= 2,
        "the header's read, then the rest at once: {whole}"
    );
}
