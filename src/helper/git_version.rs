//! The oldest git this helper speaks with, and the check that says so in one line.
//!
//! Asking git its version costs a process (about 3 ms, a third of an ls-remote), so the
//! session asks only when something already points at an old git: no `option object-format`
//! before the first `list` (every git since 2.28 sends one), or a line it cannot parse.

/// git 2.25 (January 2020) is the oldest git whose dialogue is recorded and replayed in the
/// tests (`tests/transcripts`); Ubuntu 20.04 ships it.
pub const OLDEST: (u32, u32) = (2, 25);

/// `git version 2.39.5` (or `git version 2.39.5.windows.1`, `... (Apple Git-154)`) ->
/// (2, 39).
pub fn parse(text: &str) -> Option<(u32, u32)> {
    let version = text.trim().strip_prefix("git version ")?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The version line of the `git` on `PATH` (git puts its own exec path first on the helper's
/// `PATH`, so this is the git that runs the helper), when it is older than [`OLDEST`].
pub fn too_old() -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (parse(&text)? < OLDEST).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines() {
        assert_eq!(parse("git version 2.39.5\n"), Some((2, 39)));
        assert_eq!(parse("git version 2.39.5 (Apple Git-154)"), Some((2, 39)));
        assert_eq!(parse("git version 2.45.2.windows.1"), Some((2, 45)));
        assert_eq!(parse("git version 2.9.0"), Some((2, 9)));
        assert!(parse("git version 2.9.0").is_some_and(|v| v < OLDEST));
        assert!(parse("git version 2.25.0").is_some_and(|v| v >= OLDEST));
        assert_eq!(parse("hub version 2.14"), None);
    }

    #[test]
    fn this_machines_git_is_new_enough() {
        assert_eq!(too_old(), None);
    }
}
