//! Pack files of stored and local repositories: how tests prove what was (or was not) uploaded.

use std::collections::BTreeMap;
use std::path::Path;

use super::TestEnv;

impl TestEnv {
    /// Pack files of a stored repository: file name -> size. The way to prove "nothing was
    /// uploaded" or "only a small pack was uploaded" without counters in the product.
    pub fn remote_packs(&self, alias: &str) -> BTreeMap<String, u64> {
        packs_in(&self.stored_repo(alias).join("objects/pack"))
    }

    /// Pack files of a local repository (work tree or bare).
    pub fn local_packs(&self, repo: &Path) -> BTreeMap<String, u64> {
        let git_dir = self.git(repo, &["rev-parse", "--absolute-git-dir"]).stdout;
        packs_in(&Path::new(git_dir.trim()).join("objects/pack"))
    }
}

fn packs_in(dir: &Path) -> BTreeMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect()
}
