//! Generated content for tests that need volume: a linear history through `git fast-import`
//! and deterministic incompressible bytes.

use std::path::Path;

use super::TestEnv;

/// `git fast-import` of a linear history: `count` commits on `branch`, starting from `from` (a
/// commit id) or as a new root. Each commit rewrites one of a few text files, so the history
/// has real deltas. One process for hundreds of commits keeps the big tests fast.
pub fn import_commits(
    env: &TestEnv,
    repo: &Path,
    branch: &str,
    from: Option<&str>,
    count: usize,
    label: &str,
) {
    let mut stream = String::new();
    for i in 0..count {
        let message = format!("{label} {i}\n");
        let mut content = String::new();
        for line in 0..(20 + i % 40) {
            content.push_str(&format!("{label} line {line} revision {i}\n"));
        }
        stream.push_str(&format!("commit refs/heads/{branch}\n"));
        stream.push_str(&format!(
            "author A U Thor <author@example.com> {} +0000\n",
            1_700_000_000 + i
        ));
        stream.push_str(&format!(
            "committer C O Mitter <committer@example.com> {} +0000\n",
            1_700_000_000 + i
        ));
        stream.push_str(&format!("data {}\n{message}", message.len()));
        if i == 0 {
            if let Some(from) = from {
                stream.push_str(&format!("from {from}\n"));
            }
        }
        stream.push_str(&format!("M 644 inline {label}/file{}.txt\n", i % 7));
        stream.push_str(&format!("data {}\n{content}\n", content.len()));
    }
    stream.push_str("done\n");
    env.cmd(repo, &["fast-import", "--quiet", "--done"])
        .stdin(stream)
        .ok();
}

/// Deterministic incompressible bytes (xorshift), for files whose pack size must be large.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
