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

/// The directory a repository's objects, shallow file and shared state live in: `git_dir`
/// itself, or, for a linked worktree (`git worktree add`, whose `$GIT_DIR` is
/// `.git/worktrees/<name>`), the main repository's, which the worktree's `commondir` file
/// names (relative to `git_dir`, or absolute). git reads every object through it, so a pack
/// a fetch writes anywhere else is not seen. An unreadable or overlong file: `git_dir`.
pub fn common_dir(git_dir: &Path) -> PathBuf {
    use std::io::Read;
    let mut named = String::new();
    let read = std::fs::File::open(git_dir.join("commondir"))
        .and_then(|f| f.take(4096).read_to_string(&mut named));
    match read.map(|_| named.trim()) {
        Ok(rel) if !rel.is_empty() && named.len() < 4096 => git_dir.join(rel),
        _ => git_dir.to_path_buf(),
    }
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

#[cfg(test)]
mod tests {
    use super::common_dir;

    #[test]
    fn a_linked_worktree_shares_the_main_repository_s_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let main = tmp.path().join("repo/.git");
        let wt = main.join("worktrees/wt");
        std::fs::create_dir_all(&wt).expect("mkdir");
        assert_eq!(common_dir(&main), main, "a main repository is its own");
        std::fs::write(wt.join("commondir"), "../..\n").expect("write");
        assert_eq!(
            common_dir(&wt).canonicalize().expect("exists"),
            main.canonicalize().expect("exists")
        );
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::write(wt.join("commondir"), elsewhere.to_str().expect("utf-8")).expect("write");
        assert_eq!(common_dir(&wt), elsewhere, "an absolute commondir");
        std::fs::write(wt.join("commondir"), "x".repeat(5000)).expect("write");
        assert_eq!(common_dir(&wt), wt, "an overlong file is not followed");
    }
}
