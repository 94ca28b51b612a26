//! Ref-name validation: git's `check-ref-format` rules plus what a key in object storage needs.
//!
//! Both sides use it: the helper refuses a bad name before uploading anything, the server
//! refuses it again before writing (a client is never trusted). See git-check-ref-format(1).

/// Longest accepted ref name in bytes. git has no limit, but object stores cap key length
/// (S3: 1024 bytes for the whole key, which also holds the repository prefix).
pub const MAX_REF_NAME_LEN: usize = 512;

/// Why a ref name is refused, in git's words where git has them.
pub fn check(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_REF_NAME_LEN {
        return Err("ref name too long");
    }
    if !name.starts_with("refs/") {
        return Err("ref name must start with refs/");
    }
    if name.ends_with('/') || name.contains("//") {
        return Err("ref name has an empty component");
    }
    if name.ends_with('.') {
        return Err("ref name ends with '.'");
    }
    if name.contains("..") {
        return Err("ref name contains '..'");
    }
    if name.contains("@{") {
        return Err("ref name contains '@{'");
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Err("ref name contains a forbidden character");
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return Err("ref name component starts with '.'");
        }
        // A leading '-' reads as an option when the name reaches a command line.
        if component.starts_with('-') {
            return Err("ref name component starts with '-'");
        }
        if component.ends_with(".lock") {
            return Err("ref name component ends with '.lock'");
        }
    }
    if name.split('/').count() < 3 {
        return Err("ref name needs a namespace, as in refs/heads/<name>");
    }
    Ok(())
}

pub fn is_valid(name: &str) -> bool {
    check(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_git_accepts() {
        for ok in [
            "refs/heads/main",
            "refs/heads/a/b/c",
            "refs/heads/feature/ü",
            "refs/tags/v1.0",
            "refs/heads/boba-fett",
            "refs/heads/a+b#c%d",
            "refs/notes/commits",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        assert!(is_valid(&format!("refs/heads/{}", "x".repeat(200))));
    }

    #[test]
    fn refuses_what_git_refuses() {
        let long = format!("refs/heads/{}", "x".repeat(10 * 1024));
        for bad in [
            "HEAD",
            "main",
            "refs/heads",
            "refs/heads/",
            "refs/heads//x",
            "refs/heads/a..b",
            "refs/heads/x.lock",
            "refs/heads/.hidden",
            "refs/heads/x.",
            "refs/heads/a b",
            "refs/heads/a\u{1}b",
            "refs/heads/a\u{7f}b",
            "refs/heads/a~1",
            "refs/heads/a^",
            "refs/heads/a:b",
            "refs/heads/a?",
            "refs/heads/a*",
            "refs/heads/a[",
            "refs/heads/a\\b",
            "refs/heads/a@{1}",
            "refs/heads/-x",
            "refs/../../etc/passwd",
            long.as_str(),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
