//! `--shallow-since` and `--shallow-exclude` turned into what the shallow walk needs: the
//! date text through git's own date parser (one `git config --type=expiry-date` spawn, only
//! when the option came), the ref names through the remote's listing (`negotiate::shallow`'s
//! dwim rule). Does not walk or fetch (`fetch_shallow` does).

use crate::api::RefsResponse;
use crate::fetch_shallow::CutRequest;
use crate::negotiate::shallow::{self, Unresolved};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--shallow-since: '{text}' is not a date git understands (e.g. \"2 days ago\", 2026-01-31)"
    )]
    Date { text: String },
    #[error("--shallow-since: cannot run git to parse '{text}'")]
    Spawn {
        text: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--shallow-exclude: '{name}' is not a ref of '{repo}' (see git ls-remote)")]
    UnknownRef { name: String, repo: String },
    #[error("--shallow-exclude: '{name}' is ambiguous in '{repo}' ({}); name it in full", .refs.join(", "))]
    AmbiguousRef {
        name: String,
        repo: String,
        refs: Vec<String>,
    },
    #[error("--shallow-exclude: '{name}' of '{repo}' points at no object id ({oid})")]
    BadRef {
        name: String,
        repo: String,
        oid: String,
    },
}

/// What `option deepen-since` / `deepen-not` ask for, or `None` when neither came.
pub fn request(
    since: Option<&str>,
    exclude: &[String],
    listed: &RefsResponse,
    repo: &str,
) -> Result<Option<CutRequest>, Error> {
    if since.is_none() && exclude.is_empty() {
        return Ok(None);
    }
    let since = since.map(parse_date).transpose()?;
    let head = listed.head.as_ref().map(|h| h.symref.as_str());
    let mut ids = Vec::new();
    for name in exclude {
        let oid = shallow::resolve_exclude(name, &listed.refs, head).map_err(|e| match e {
            Unresolved::Unknown => Error::UnknownRef {
                name: name.clone(),
                repo: repo.to_owned(),
            },
            Unresolved::Ambiguous(refs) => Error::AmbiguousRef {
                name: name.clone(),
                repo: repo.to_owned(),
                refs,
            },
        })?;
        let id = crate::negotiate::parse_id(&oid).ok_or_else(|| Error::BadRef {
            name: name.clone(),
            repo: repo.to_owned(),
            oid: oid.clone(),
        })?;
        ids.push(id);
    }
    Ok(Some(CutRequest {
        since,
        exclude: ids,
    }))
}

/// Unix seconds for a date as git's `--shallow-since` reads it (approxidate: "2 days ago",
/// "2026-01-31", "@1700000000"). `git config --type=expiry-date` runs the same parser and,
/// unlike `rev-parse --since`, refuses text it cannot read instead of taking it for "now".
/// The value goes through `git -c` (one argument, never a shell; `GIT_CONFIG_COUNT` would
/// need git 2.31).
fn parse_date(text: &str) -> Result<i64, Error> {
    const KEY: &str = "hypha.shallowsince";
    let out = std::process::Command::new("git")
        .arg("-c")
        .arg(format!("{KEY}={text}"))
        .args(["config", "--type=expiry-date", KEY])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            text: text.to_owned(),
            source,
        })?;
    let date = || Error::Date {
        text: text.to_owned(),
    };
    if !out.status.success() {
        return Err(date());
    }
    // "now" and "all" read as the end of time: no commit is that new, as with git's own
    // approxidate of "now" (nothing committed after the fetch started).
    let seconds: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| date())?;
    Ok(i64::try_from(seconds).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_git_reads_them() {
        assert_eq!(parse_date("@1700000000").ok(), Some(1_700_000_000));
        assert_eq!(
            parse_date("2005-04-07T22:13:13 +0000").ok(),
            Some(1_112_911_993)
        );
        let ago = parse_date("2 days ago").expect("relative date");
        assert!(ago > 1_700_000_000, "{ago}");
        assert!(matches!(parse_date("garbage"), Err(Error::Date { .. })));
        assert!(matches!(parse_date(""), Err(Error::Date { .. })));
    }
}
