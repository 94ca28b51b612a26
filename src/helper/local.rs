//! The local repository git runs us in: opening it and asking whether it has an object.
//!
//! Shared by fetch and push, so both report an unopenable repository the same way.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot open the local repository at {path}")]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: Box<gix::Error>,
}

pub fn open(git_dir: &Path) -> Result<gix::Repository, OpenError> {
    gix::open(git_dir).map_err(|source| OpenError {
        path: git_dir.to_owned(),
        source: Box::new(source),
    })
}

/// Whether `oid` (40 hex) names an object in `repo`; malformed ids are simply absent.
pub fn has_object(repo: &gix::Repository, oid: &str) -> bool {
    gix::ObjectId::from_hex(oid.as_bytes()).is_ok_and(|id| repo.has_object(id))
}
