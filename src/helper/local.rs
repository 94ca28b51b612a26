//! The local repository git runs us in: opening it, and answering negotiation's questions
//! about it (`negotiate::push::Objects`) with gix.
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

/// The local repository as push negotiation asks about it.
pub struct Objects<'r>(pub &'r gix::Repository);

impl crate::negotiate::push::Objects for Objects<'_> {
    fn has(&self, id: &gix::ObjectId) -> bool {
        self.0.has_object(id)
    }

    fn resolve(&self, src: &str) -> Option<gix::ObjectId> {
        self.0.rev_parse_single(src).ok().map(|id| id.detach())
    }

    fn peel_to_commit(&self, id: &gix::ObjectId) -> Option<gix::ObjectId> {
        self.0
            .find_object(*id)
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id)
    }

    fn is_ancestor(&self, ancestor: &gix::ObjectId, descendant: &gix::ObjectId) -> bool {
        matches!(self.0.merge_base(*ancestor, *descendant), Ok(Some(base)) if base.detach() == *ancestor)
    }
}
