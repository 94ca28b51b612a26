//! `option <name> <value>` handling (docs/protocol.md §4): every name gets `ok` or `unsupported`.
//!
//! Per-push state (leases, push options, dry-run, atomic) is reset after each batch, as git
//! sends options again before the next command.

use super::protocol::{unquote_c_style, OptionReply};
use super::{fetch, push};
use crate::negotiate::shallow::Filter;
use crate::progress::Progress;
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Options {
    pub progress: bool,
    pub verbosity: u32,
    pub object_format: bool,
    pub cloning: bool,
    pub refetch: bool,
    pub dry_run: bool,
    pub atomic: bool,
    pub push_options: Vec<String>,
    /// `option cas <ref>:<oid>`: ref -> expected value (`None` = must not exist).
    pub leases: BTreeMap<String, Option<String>>,
    /// How git narrows this batch's fetch.
    pub shape: Shape,
    warned_filter: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            progress: false,
            verbosity: 1,
            object_format: false,
            cloning: false,
            refetch: false,
            dry_run: false,
            atomic: false,
            push_options: Vec::new(),
            leases: BTreeMap::new(),
            shape: Shape::default(),
            warned_filter: false,
        }
    }
}

/// What git asks to narrow a fetch by: `--depth`, `--deepen`, `--unshallow`, the
/// `--shallow-*` options, `--filter`, and its lazy fetches. Set per batch, reset after it, and
/// handed to the fetch whole.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// `option depth N` (`--depth`, `--deepen`, `--unshallow`).
    pub depth: Option<u64>,
    /// `option deepen-relative true` (`--deepen`): the depth counts from the boundaries.
    pub deepen_relative: bool,
    /// `option deepen-since <date>` (`--shallow-since`): the user's text, parsed at fetch
    /// time (a bad date then fails the fetch; an `error` here would let `git clone`, which
    /// ignores it, fetch everything).
    pub deepen_since: Option<String>,
    /// `option deepen-not <ref>` (`--shallow-exclude`, one per ref), unquoted; resolved
    /// against the listing at fetch time.
    pub deepen_not: Vec<String>,
    /// `option filter <spec>` (`--filter`), when the helper honours it.
    pub filter: Option<Filter>,
    /// `option from-promisor 1`: git's lazy fetch of objects a partial clone lacks.
    pub from_promisor: bool,
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

impl Options {
    /// Answer `option <name> [<value>]`. A missing value means `true` for a flag (git before
    /// 2.46 sends `option object-format` so); an option that needs a value and has none gets
    /// an `error`; a name the helper does not know gets `unsupported` with or without one.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> OptionReply {
        let Some(value) = value else {
            return match name {
                "progress" | "object-format" | "cloning" | "refetch" | "deepen-relative"
                | "from-promisor" | "no-dependents" | "update-shallow" | "updateshallow"
                | "dry-run" | "atomic" | "followtags" | "check-connectivity"
                | "force-if-includes" => self.set(name, Some("true")),
                "verbosity" | "depth" | "deepen-since" | "deepen-not" | "filter" | "family"
                | "push-option" | "cas" | "pushcert" => {
                    OptionReply::Error(format!("option {name} needs a value"))
                }
                _ => OptionReply::Unsupported,
            };
        };
        let flag = |slot: &mut bool| match parse_bool(value) {
            Some(v) => {
                *slot = v;
                OptionReply::Ok
            }
            None => OptionReply::Error(format!("invalid value for {name}: {value}")),
        };
        match name {
            "progress" => flag(&mut self.progress),
            "verbosity" => match value.parse() {
                Ok(v) => {
                    self.verbosity = v;
                    OptionReply::Ok
                }
                Err(_) => OptionReply::Error(format!("invalid verbosity {value}")),
            },
            "object-format" => flag(&mut self.object_format),
            "cloning" => flag(&mut self.cloning),
            "refetch" => flag(&mut self.refetch),
            "depth" => match value.parse::<u64>() {
                Ok(n) if n > 0 => {
                    self.shape.depth = Some(n);
                    OptionReply::Ok
                }
                // git's tag backfill (every version) sends `option depth 0`: no depth.
                Ok(0) => {
                    self.shape.depth = None;
                    OptionReply::Ok
                }
                _ => OptionReply::Error(format!("invalid depth {value}")),
            },
            "deepen-relative" => flag(&mut self.shape.deepen_relative),
            // git C-quotes every string option's value when it needs quoting.
            "deepen-since" => match unquote_c_style(value) {
                Ok(v) => {
                    self.shape.deepen_since = Some(v);
                    OptionReply::Ok
                }
                Err(e) => OptionReply::Error(e.to_string()),
            },
            "deepen-not" => match unquote_c_style(value) {
                Ok(v) => {
                    self.shape.deepen_not.push(v);
                    OptionReply::Ok
                }
                Err(e) => OptionReply::Error(e.to_string()),
            },
            "filter" => match unquote_c_style(value)
                .ok()
                .as_deref()
                .and_then(Filter::parse)
            {
                Some(f) => {
                    self.shape.filter = Some(f);
                    OptionReply::Ok
                }
                None => OptionReply::Unsupported,
            },
            "from-promisor" => flag(&mut self.shape.from_promisor),
            // git 2.25-2.28 fetch a partial clone's missing objects in process with
            // `from-promisor` and `no-dependents` and no filter: only the named objects.
            "no-dependents" => {
                let mut no_dependents = false;
                let reply = flag(&mut no_dependents);
                if no_dependents && self.shape.filter.is_none() {
                    self.shape.filter = Some(Filter::TreeZero);
                }
                reply
            }
            // The helper writes `$GIT_DIR/shallow` itself on every shallow fetch, as
            // fetch-pack does with --update-shallow.
            "update-shallow" | "updateshallow" => {
                let mut ignored = false;
                flag(&mut ignored)
            }
            "dry-run" => flag(&mut self.dry_run),
            "atomic" => flag(&mut self.atomic),
            // Accepted and honoured by the way fetch works: every pack holds whole history
            // for its objects, annotated tags travel with the commits they point at, and
            // git verifies connectivity itself after the batch.
            "followtags" | "check-connectivity" | "force-if-includes" => {
                let mut ignored = false;
                flag(&mut ignored)
            }
            "family" if matches!(value, "ipv4" | "ipv6" | "all") => OptionReply::Ok,
            "push-option" => match unquote_c_style(value) {
                Ok(v) => {
                    self.push_options.push(v);
                    OptionReply::Ok
                }
                Err(e) => OptionReply::Error(e.to_string()),
            },
            "cas" => match unquote_c_style(value).map(|v| parse_lease(&v)) {
                Ok(Some((name, expected))) => {
                    self.leases.insert(name, expected);
                    OptionReply::Ok
                }
                _ => OptionReply::Error(format!("invalid lease {value}")),
            },
            // We never ask for a push certificate, so "if-asked" means "unsigned".
            "pushcert" => match value {
                "if-asked" | "false" => OptionReply::Ok,
                _ => OptionReply::Unsupported,
            },
            _ => OptionReply::Unsupported,
        }
    }

    /// git downgrades some unsupported options silently; say so instead (docs/protocol.md §4).
    pub fn warn_if_downgraded(&mut self, name: &str) {
        match name {
            "filter" if !self.warned_filter => {
                self.warned_filter = true;
                tracing::warn!(
                    "warning: hypha remotes support only --filter=blob:none, blob:limit=<n> and tree:0; \
                     fetching all objects"
                );
            }
            _ => {}
        }
    }

    /// The binary's progress handle (`terminal`: what it found out about stderr) narrowed by
    /// `option progress` and verbosity.
    pub fn progress(&self, terminal: Progress) -> Progress {
        terminal.requested(self.progress && self.verbosity > 0)
    }

    /// What a fetch batch is to do.
    pub fn fetch_options(&self) -> fetch::Options {
        fetch::Options {
            cloning: self.cloning,
            refetch: self.refetch,
            shape: self.shape.clone(),
        }
    }

    /// What a push batch is to do.
    pub fn push_options(&self) -> push::Options {
        push::Options {
            dry_run: self.dry_run,
            atomic: self.atomic,
            push_options: self.push_options.clone(),
            leases: self.leases.clone(),
        }
    }

    /// Forget per-command state once a batch is answered.
    pub fn end_batch(&mut self) {
        self.dry_run = false;
        self.atomic = false;
        self.push_options.clear();
        self.leases.clear();
        self.refetch = false;
        self.shape = Shape::default();
    }
}

/// `<ref>:<oid>`; an all-zero oid or an empty one means "must not exist".
fn parse_lease(value: &str) -> Option<(String, Option<String>)> {
    let (name, oid) = value.rsplit_once(':')?;
    if name.is_empty() {
        return None;
    }
    if oid.is_empty() || oid.bytes().all(|b| b == b'0') {
        return Some((name.to_owned(), None));
    }
    crate::api::is_object_id(oid).then(|| (name.to_owned(), Some(oid.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_gets_an_answer() {
        let mut o = Options::default();
        for (name, value, expected) in [
            ("progress", "true", OptionReply::Ok),
            ("verbosity", "0", OptionReply::Ok),
            ("followtags", "true", OptionReply::Ok),
            ("check-connectivity", "true", OptionReply::Ok),
            ("object-format", "true", OptionReply::Ok),
            ("dry-run", "true", OptionReply::Ok),
            ("atomic", "true", OptionReply::Ok),
            ("pushcert", "if-asked", OptionReply::Ok),
            ("pushcert", "true", OptionReply::Unsupported),
            ("depth", "1", OptionReply::Ok),
            ("deepen-relative", "true", OptionReply::Ok),
            ("update-shallow", "true", OptionReply::Ok),
            ("deepen-since", "1 day ago", OptionReply::Ok),
            ("deepen-not", "\"v1.0\"", OptionReply::Ok),
            ("deepen-not", "main", OptionReply::Ok),
            ("filter", "blob:none", OptionReply::Ok),
            (
                "filter",
                "sparse:oid=main:.sparse",
                OptionReply::Unsupported,
            ),
            ("from-promisor", "1", OptionReply::Ok),
            ("no-dependents", "1", OptionReply::Ok),
            ("servpath", "/x", OptionReply::Unsupported),
            ("no-such-option", "x", OptionReply::Unsupported),
        ] {
            assert_eq!(o.set(name, Some(value)), expected, "{name} {value}");
        }
        assert!(o.progress && o.dry_run && o.atomic && o.object_format);
        assert_eq!(o.verbosity, 0);
        assert_eq!((o.shape.depth, o.shape.deepen_relative), (Some(1), true));
        assert_eq!(o.shape.deepen_since.as_deref(), Some("1 day ago"));
        assert_eq!(o.shape.deepen_not, vec!["v1.0", "main"]);
        assert_eq!(
            o.set("deepen-since", Some("\"@1700000000\"")),
            OptionReply::Ok
        );
        assert_eq!(o.shape.deepen_since.as_deref(), Some("@1700000000"));
        assert!(matches!(
            o.set("progress", Some("maybe")),
            OptionReply::Error(_)
        ));
        assert!(matches!(o.set("depth", Some("-1")), OptionReply::Error(_)));
        // The tag backfill's `option depth 0` means no depth, as in remote-curl.
        assert_eq!(o.set("depth", Some("0")), OptionReply::Ok);
        assert_eq!(o.shape.depth, None);
    }

    #[test]
    fn an_option_without_a_value() {
        let mut o = Options::default();
        // git 2.28-2.44: `option object-format` asks for the hash algorithm.
        assert_eq!(o.set("object-format", None), OptionReply::Ok);
        assert!(o.object_format);
        assert!(matches!(o.set("depth", None), OptionReply::Error(_)));
        assert_eq!(o.shape.depth, None);
        assert_eq!(o.set("no-such-option", None), OptionReply::Unsupported);
    }

    #[test]
    fn leases_and_push_options() {
        let mut o = Options::default();
        let oid = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            o.set("cas", Some(&format!("refs/heads/main:{oid}"))),
            OptionReply::Ok
        );
        assert_eq!(
            o.set("cas", Some(&format!("refs/heads/new:{}", "0".repeat(40)))),
            OptionReply::Ok
        );
        assert_eq!(o.set("push-option", Some("\"msg=a b\"")), OptionReply::Ok);
        assert_eq!(o.set("push-option", Some("ci.skip")), OptionReply::Ok);
        assert!(matches!(
            o.set("cas", Some("nonsense")),
            OptionReply::Error(_)
        ));
        let s = o.push_options();
        assert_eq!(s.leases["refs/heads/main"].as_deref(), Some(oid));
        assert_eq!(s.leases["refs/heads/new"], None);
        assert_eq!(s.push_options, vec!["msg=a b", "ci.skip"]);
        o.end_batch();
        assert!(o.push_options().leases.is_empty());
    }
}
