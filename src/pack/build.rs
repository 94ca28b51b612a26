//! `git pack-objects --revs` into a temporary directory: a self-contained pack ([`build`]), or
//! a thin one for a server that completes it ([`build_thin`]).
//!
//! Packs at rest are self-contained (docs/design.md §3 rule 1): a thin pack only ever goes to
//! the server's `fix-thin`, which appends its bases before any reader sees it. The tip and
//! exclusion lists travel on stdin, so no object id list is limited by the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run git pack-objects")]
    Spawn(#[source] std::io::Error),
    #[error("git pack-objects failed ({status})")]
    Failed { status: std::process::ExitStatus },
    #[error("git pack-objects printed an unexpected pack name {0:?}")]
    BadName(String),
    #[error("git index-pack --fix-thin failed ({status})")]
    FixThin { status: std::process::ExitStatus },
    #[error("cannot read the thin pack git pack-objects wrote: {0}")]
    Walk(String),
    #[error("cannot index the thin pack")]
    Idx(#[from] super::idx_file::Error),
    #[error("cannot read the pack written by git pack-objects at {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A pack and its index on local disk, ready to upload.
#[derive(Debug, Clone)]
pub struct Built {
    /// `pack-<40 hex>`.
    pub name: String,
    pub pack_path: PathBuf,
    pub idx_path: PathBuf,
    pub pack_size: u64,
    pub idx_size: u64,
}

/// Pack every object reachable from `tips` and not from `exclude` into `out_dir`.
/// Returns `None` when there is nothing to send (all objects are already on the remote).
/// `exclude` must hold only objects present locally: git refuses unknown ones.
pub fn build(
    git_dir: &Path,
    tips: &[String],
    exclude: &[String],
    out_dir: &Path,
    progress: bool,
) -> Result<Option<Built>, Error> {
    let child = Command::new("git")
        .args(super::limits::config_args(git_dir))
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "pack-objects",
            "--revs",
            "--delta-base-offset",
            "--non-empty",
            if progress { "--progress" } else { "-q" },
        ])
        .arg(out_dir.join("pack"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::Spawn)?;
    let out = feed(child, tips, exclude)?;
    let hash = String::from_utf8_lossy(&out).trim().to_owned();
    if hash.is_empty() {
        return Ok(None);
    }
    built(out_dir, &hash).map(Some)
}

/// What [`build_thin`] made.
#[derive(Debug, Clone)]
pub enum ThinBuilt {
    /// Deltas against objects the remote has, for the server's `fix-thin`; its idx lists only
    /// its own entries.
    Thin(Built),
    /// The pack needed no base, or bases of at most [`SMALL_BASES`] bytes, which were appended
    /// here: self-contained, uploaded like any pack.
    SelfContained(Built),
    /// A thin pack with no idx (`idx_path` empty, `idx_size` 0), for a server that completes
    /// and indexes an inline thin pack itself (`thin_without_idx`): the local
    /// `index-pack --fix-thin` that only lent the idx its ids is skipped (it resolves every
    /// base, as long as the server's own completion).
    ThinWithoutIdx(Built),
}

/// Pack every object reachable from `tips` and not from `exclude` as a thin pack (deltas
/// against `exclude`'s objects allowed, within [`super::limits::thin_config_args`]'s bounds).
/// pack-objects writes no idx for a thin pack, so a copy is completed locally with
/// `git index-pack --fix-thin` for the object ids, its appended bases stored uncompressed
/// (`core.compression=0`: that copy only lends its idx, and deflating a large base again cost
/// more than the rest of the push). The thin pack's idx is the completed one's entries that lie
/// inside the thin pack (same bytes, so same CRCs). A thin pack of at most `idx_free_max`
/// bytes (0: none) whose bases are over [`SMALL_BASES`] skips all that
/// ([`ThinBuilt::ThinWithoutIdx`]).
pub fn build_thin(
    git_dir: &Path,
    tips: &[String],
    exclude: &[String],
    out_dir: &Path,
    progress: bool,
    idx_free_max: u64,
) -> Result<Option<ThinBuilt>, Error> {
    let thin_path = out_dir.join("thin.pack");
    let thin_file = std::fs::File::create(&thin_path).map_err(|source| Error::Read {
        path: thin_path.clone(),
        source,
    })?;
    // The user's bounds, read once for pack-objects and both index-packs (one `git config` run).
    let bounds = super::limits::thin_config_args(git_dir);
    let child = Command::new("git")
        .args(&bounds)
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "pack-objects",
            "--revs",
            "--thin",
            "--stdout",
            "--delta-base-offset",
            "--non-empty",
            if progress { "--progress" } else { "-q" },
        ])
        .stdin(Stdio::piped())
        .stdout(thin_file)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::Spawn)?;
    feed(child, tips, exclude)?;
    let thin_bytes_len = size(&thin_path)?;
    if thin_bytes_len == 0 {
        return Ok(None);
    }
    if thin_bytes_len <= idx_free_max && bases_size(git_dir, &thin_path)? > SMALL_BASES {
        let thin_name = format!(
            "pack-{}",
            hex::encode(trailer_of(&thin_path, thin_bytes_len)?)
        );
        let pack_path = out_dir.join(format!("{thin_name}.pack"));
        std::fs::rename(&thin_path, &pack_path).map_err(|source| Error::Read {
            path: thin_path.clone(),
            source,
        })?;
        return Ok(Some(ThinBuilt::ThinWithoutIdx(Built {
            name: thin_name,
            pack_path,
            idx_path: PathBuf::new(),
            pack_size: thin_bytes_len,
            idx_size: 0,
        })));
    }
    let full = fix_thin(git_dir, &bounds, &thin_path, out_dir, false)?;

    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })
    };
    let full_entries = super::idx_file::entries(&read(&full.idx_path)?, &full.name)?;
    let data_end = thin_bytes_len.saturating_sub(20);
    let mut entries: Vec<_> = full_entries
        .iter()
        .filter(|e| e.offset < data_end)
        .copied()
        .collect();
    if entries.len() == full_entries.len() {
        // Nothing appended: index-pack kept the pack as it came, so it is self-contained.
        let _ = std::fs::remove_file(&thin_path);
        return Ok(Some(ThinBuilt::SelfContained(full)));
    }
    let _ = std::fs::remove_file(&full.pack_path);
    let _ = std::fs::remove_file(&full.idx_path);
    if full.pack_size - thin_bytes_len <= SMALL_BASES {
        // Bases this small cost less to send than the server's completion (a round trip, and
        // on S3 a dozen store requests): complete locally, compressed, and send that.
        let full = fix_thin(git_dir, &bounds, &thin_path, out_dir, true)?;
        let _ = std::fs::remove_file(&thin_path);
        return Ok(Some(ThinBuilt::SelfContained(full)));
    }
    let trailer = trailer_of(&thin_path, thin_bytes_len)?;
    let thin_hash = hex::encode(trailer);
    let thin_name = format!("pack-{thin_hash}");
    let idx = super::idx_file::write(&mut entries, &trailer, &thin_name)?;
    let pack_path = out_dir.join(format!("{thin_name}.pack"));
    let idx_path = out_dir.join(format!("{thin_name}.idx"));
    std::fs::rename(&thin_path, &pack_path).map_err(|source| Error::Read {
        path: thin_path.clone(),
        source,
    })?;
    std::fs::write(&idx_path, &idx).map_err(|source| Error::Read {
        path: idx_path.clone(),
        source,
    })?;
    Ok(Some(ThinBuilt::Thin(Built {
        name: thin_name,
        pack_path,
        idx_path,
        pack_size: thin_bytes_len,
        idx_size: idx.len() as u64,
    })))
}

/// The last 20 bytes of the pack at `path` (`len` bytes): its checksum, which names it.
fn trailer_of(path: &Path, len: u64) -> Result<[u8; 20], Error> {
    use std::io::{Read, Seek, SeekFrom};
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let mut t = [0u8; 20];
    f.seek(SeekFrom::Start(len.saturating_sub(20)))
        .and_then(|_| f.read_exact(&mut t))
        .map_err(read_err)?;
    Ok(t)
}

/// The bytes of the objects the thin pack at `path` stands on outside itself (its REF_DELTA
/// bases: with `--delta-base-offset`, git names a base by id only when it is not in the
/// pack), as the local repository holds them whole: what a completion appends. The entries
/// are walked by gix, inflated only to find their ends; each base's size is a header lookup.
fn bases_size(git_dir: &Path, path: &Path) -> Result<u64, Error> {
    use gix_pack::data::entry::Header;
    use gix_pack::data::input::{BytesToEntriesIter, EntryDataMode, Mode};
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let entries = BytesToEntriesIter::new_from_header(
        std::io::BufReader::with_capacity(1 << 16, file),
        Mode::AsIs,
        EntryDataMode::Ignore,
        gix::hash::Kind::Sha1,
    )
    .map_err(|e| Error::Walk(e.to_string()))?;
    let mut bases = std::collections::BTreeSet::new();
    for entry in entries {
        if let Header::RefDelta { base_id } = entry.map_err(|e| Error::Walk(e.to_string()))?.header
        {
            bases.insert(base_id);
        }
    }
    if bases.is_empty() {
        return Ok(0);
    }
    let repo = gix::open(git_dir).map_err(|e| Error::Walk(e.to_string()))?;
    let mut total: u64 = 0;
    for id in bases {
        let header = repo
            .find_header(id)
            .map_err(|e| Error::Walk(format!("base {id}: {e}")))?;
        total = total.saturating_add(header.size());
    }
    Ok(total)
}

/// Appended bases (uncompressed) up to this many bytes are sent in a self-contained pack rather
/// than completed by the server: at most this much more than the thin pack goes up (the
/// issue's bound for an edit push is git's thin pack x2 + 8 KiB), and a push of a small change
/// saves the `fix-thin` round trip.
pub const SMALL_BASES: u64 = 8 << 10;

/// `git index-pack --stdin --fix-thin` of `thin_path` into `out_dir` as `pack-<hash>`: the
/// bases it appends deflated (`compress`) or stored as they are (for an idx only). `bounds`:
/// the memory bounds' `-c` arguments.
fn fix_thin(
    git_dir: &Path,
    bounds: &[std::ffi::OsString],
    thin_path: &Path,
    out_dir: &Path,
    compress: bool,
) -> Result<Built, Error> {
    let full_tmp = out_dir.join("full.pack");
    let mut cmd = Command::new("git");
    cmd.args(bounds);
    if !compress {
        cmd.args(["-c", "core.compression=0", "-c", "pack.compression=0"]);
    }
    let out = cmd
        .arg("--git-dir")
        .arg(git_dir)
        .args(["index-pack", "--stdin", "--fix-thin"])
        .arg(&full_tmp)
        .stdin(
            std::fs::File::open(thin_path).map_err(|source| Error::Read {
                path: thin_path.to_owned(),
                source,
            })?,
        )
        .stderr(Stdio::inherit())
        .output()
        .map_err(Error::Spawn)?;
    if !out.status.success() {
        return Err(Error::FixThin { status: out.status });
    }
    // index-pack prints "pack\t<hash>".
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hash = stdout
        .trim()
        .rsplit('\t')
        .next()
        .unwrap_or_default()
        .to_owned();
    if !crate::names::is_valid_pack_name(&format!("pack-{hash}")) {
        return Err(Error::BadName(hash));
    }
    for ext in ["pack", "idx"] {
        let from = full_tmp.with_extension(ext);
        let to = out_dir.join(format!("pack-{hash}.{ext}"));
        std::fs::rename(&from, &to).map_err(|source| Error::Read { path: from, source })?;
    }
    let _ = std::fs::remove_file(full_tmp.with_extension("rev"));
    built(out_dir, &hash)
}

fn size(path: &Path) -> Result<u64, Error> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })
}

/// Write the tips and `^exclusions` to pack-objects' stdin; its stdout when it succeeded.
fn feed(
    mut child: std::process::Child,
    tips: &[String],
    exclude: &[String],
) -> Result<Vec<u8>, Error> {
    let mut input = String::new();
    for tip in tips {
        input.push_str(tip);
        input.push('\n');
    }
    for ex in exclude {
        input.push('^');
        input.push_str(ex);
        input.push('\n');
    }
    {
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Spawn(std::io::Error::other("git pack-objects has no stdin")))?;
        stdin.write_all(input.as_bytes()).map_err(Error::Spawn)?;
    }
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if !out.status.success() {
        return Err(Error::Failed { status: out.status });
    }
    Ok(out.stdout)
}

/// The pack `pack-<hash>` git wrote into `out_dir`.
fn built(out_dir: &Path, hash: &str) -> Result<Built, Error> {
    let name = format!("pack-{hash}");
    if !crate::names::is_valid_pack_name(&name) {
        return Err(Error::BadName(hash.to_owned()));
    }
    let pack_path = out_dir.join(format!("{name}.pack"));
    let idx_path = out_dir.join(format!("{name}.idx"));
    Ok(Built {
        pack_size: size(&pack_path)?,
        idx_size: size(&idx_path)?,
        name,
        pack_path,
        idx_path,
    })
}
