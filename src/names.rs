//! The names a repository accepts: pack names, object ids, workspace and alias segments, and
//! (in [`refname`]) ref names. Rules of the repository, not of the wire or of the store: the
//! helper applies them before it sends anything, `storage` again before it writes (a client is
//! never trusted), and `api` re-exports them for the client. Pure functions, no I/O.

pub mod refname;

/// `pack-<40 lowercase hex>`: the only pack names either side accepts.
pub fn is_valid_pack_name(name: &str) -> bool {
    name.strip_prefix("pack-").is_some_and(is_object_id)
}

/// 40 lowercase hex digits (SHA-1).
pub fn is_object_id(s: &str) -> bool {
    lower_hex(s, 40)
}

/// A Git LFS object id: 64 lowercase hex digits (the SHA-256 of the content), the only form
/// git-lfs sends and the only one safe to put in a storage key.
pub fn is_lfs_oid(s: &str) -> bool {
    lower_hex(s, 64)
}

/// Exactly `len` lowercase hex digits.
fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Workspace and alias names: what Hypha allows, and nothing that could escape a key prefix.
pub fn is_valid_repo_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.contains("..")
}

/// The repository a URL's `workspace/alias` names: the alias without a trailing `.git`
/// (`hypha::https://host/ws/alias.git` names the same repository as `.../alias`), or the
/// one-line refusal both the server and the Hypha plugin answer with.
pub fn repository(workspace: &str, alias: &str) -> Result<String, String> {
    let given = alias;
    let alias = alias.strip_suffix(".git").unwrap_or(alias);
    // `x.git.git` would name a repository `x.git`, which no client URL can name (the client
    // strips `.git` once and refuses what still ends in it).
    if alias.ends_with(".git") {
        return Err(format!(
            "invalid repository name {:?}",
            crate::storage::shorten(given)
        ));
    }
    for segment in [workspace, alias] {
        if !is_valid_repo_segment(segment) {
            return Err(format!(
                "invalid repository name {:?}",
                crate::storage::shorten(segment)
            ));
        }
    }
    Ok(alias.to_owned())
}

/// The ref a new repository's default branch names (`main` or `refs/heads/main`), or the
/// one-line refusal `create` answers with.
pub fn default_branch_ref(branch: &str) -> Result<String, String> {
    let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    let full = format!("refs/heads/{branch}");
    refname::check(&full)
        .map(|()| full.clone())
        .map_err(|why| format!("invalid ref {:?}: {why}", crate::storage::shorten(&full)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_and_default_branches() {
        assert_eq!(repository("ws", "r.git"), Ok("r".to_owned()));
        assert_eq!(repository("ws", "r"), Ok("r".to_owned()));
        for (ws, alias) in [
            ("ws", "../x"),
            ("-w", "r"),
            ("ws", ".git"),
            ("ws", "a b"),
            ("ws", "x.git.git"),
        ] {
            let refused = repository(ws, alias).unwrap_err();
            assert!(refused.starts_with("invalid repository name"), "{refused}");
        }
        assert_eq!(default_branch_ref("main"), Ok("refs/heads/main".to_owned()));
        assert_eq!(
            default_branch_ref("refs/heads/dev"),
            Ok("refs/heads/dev".to_owned())
        );
        for bad in ["a..b", "x.lock", "-x", "a b", "a/", &"x".repeat(600)] {
            let refused = default_branch_ref(bad).unwrap_err();
            assert!(
                refused.starts_with("invalid ref \"refs/heads/"),
                "{refused}"
            );
        }
    }

    #[test]
    fn pack_names() {
        assert!(is_valid_pack_name(&format!("pack-{}", "a".repeat(40))));
        assert!(!is_valid_pack_name(&format!("pack-{}", "A".repeat(40))));
        assert!(!is_valid_pack_name("pack-../../x"));
        assert!(!is_valid_pack_name(&format!(
            "pack-{}.pack",
            "a".repeat(40)
        )));
    }

    #[test]
    fn lfs_oids() {
        assert!(is_lfs_oid(&"0a".repeat(32)));
        assert!(!is_lfs_oid(&"0A".repeat(32)));
        assert!(!is_lfs_oid(&"a".repeat(63)));
        assert!(!is_lfs_oid(&format!("../{}", "a".repeat(61))));
    }

    #[test]
    fn repo_segments() {
        assert!(is_valid_repo_segment("ws-user-1"));
        assert!(is_valid_repo_segment("my.repo_2"));
        for bad in ["", "..", "../x", "a/b", "%2e%2e", ".git", "-x", "a..b"] {
            assert!(!is_valid_repo_segment(bad), "{bad}");
        }
    }
}
