//! Verify a received pack stream and write it into the repository with gix.
//!
//! `gix_pack::Bundle::write_to_directory` checks every object's hash and the trailer while it
//! streams, so a corrupt or truncated pack fails here and leaves nothing behind: gix writes to
//! temporary files and renames only complete, verified `.pack` + `.idx` pairs into place.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pack {pack} is corrupt or incomplete: {reason}")]
    Invalid { pack: String, reason: String },
    #[error("pack {pack} contains no objects")]
    Empty { pack: String },
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

/// Read a whole pack from `input`, verify it, and write it into `pack_dir`.
pub fn index(
    input: &mut dyn BufRead,
    pack_dir: &Path,
    pack: &str,
    interrupt: &AtomicBool,
) -> Result<Indexed, Error> {
    let options = gix_pack::bundle::write::Options {
        thread_limit: None,
        iteration_mode: gix_pack::data::input::Mode::Verify,
        index_version: gix_pack::index::Version::V2,
        alloc_limit_bytes: None,
        compression: Default::default(),
    };
    let outcome = gix_pack::Bundle::write_to_directory(
        input,
        Some(pack_dir),
        &mut gix::progress::Discard,
        interrupt,
        None::<gix::objs::find::Never>,
        gix::hash::Kind::Sha1,
        options,
    )
    .map_err(|e| Error::Invalid {
        pack: pack.to_owned(),
        reason: with_causes(&e),
    })?;
    if outcome.index.num_objects == 0 {
        return Err(Error::Empty {
            pack: pack.to_owned(),
        });
    }
    Ok(Indexed {
        pack_path: outcome.data_path,
        idx_path: outcome.index_path,
        keep_path: outcome.keep_path,
        objects: outcome.index.num_objects,
    })
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
