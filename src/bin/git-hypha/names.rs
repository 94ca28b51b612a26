//! `git hypha names` (hidden): the name checks of the server, for the Hypha plugin, which must
//! refuse a bad workspace, alias or default branch before it asks Hypha anything (Hypha writes a
//! new repository's HEAD itself, before the server sees it). The plugin keeps no copy of the
//! rules: it runs this once per worker and asks it one line at a time.
//!
//! Protocol: one JSON object per line on stdin, `{"workspace", "alias", "default_branch"?}`;
//! one JSON object per line on stdout, `{"alias", "default_branch"?}` (the alias without
//! `.git`, the branch as a full ref) or `{"detail"}` (the server's own one-line refusal). Lines
//! longer than [`MAX_LINE`] or not JSON are answered with a `detail`; end of input ends it.

use hypha_git::names;
use std::io::{BufRead, Write};

/// The longest request line read: names are at most a few hundred bytes.
const MAX_LINE: u64 = 64 << 10;

#[derive(serde::Deserialize)]
struct Ask {
    workspace: String,
    alias: String,
    default_branch: Option<String>,
}

#[derive(serde::Serialize, Default)]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Answer every line of stdin until it closes.
pub fn run() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = std::io::Read::take(&mut input, MAX_LINE).read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        let answer = if line.last() != Some(&b'\n') && read as u64 == MAX_LINE {
            // Skip the rest of the overlong line, so the next answer is the next line's.
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest)?;
            refused("request line too long".into())
        } else {
            match serde_json::from_slice::<Ask>(&line) {
                Ok(ask) => check(&ask),
                Err(e) => refused(format!("unreadable request: {e}")),
            }
        };
        serde_json::to_writer(&mut out, &answer)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
}

fn check(ask: &Ask) -> Answer {
    let alias = match names::repository(&ask.workspace, &ask.alias) {
        Ok(alias) => alias,
        Err(detail) => return refused(detail),
    };
    let default_branch = match ask.default_branch.as_deref().map(names::default_branch_ref) {
        Some(Err(detail)) => return refused(detail),
        Some(Ok(full)) => Some(full),
        None => None,
    };
    Answer {
        alias: Some(alias),
        default_branch,
        detail: None,
    }
}

fn refused(detail: String) -> Answer {
    Answer {
        detail: Some(detail),
        ..Answer::default()
    }
}
