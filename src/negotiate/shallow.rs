//! Which commits a shallow fetch takes, and what `$GIT_DIR/shallow` says afterwards: git's
//! `--depth`, `--deepen` and `--unshallow` rules (fetch-pack, upload-pack's `deepen`), over
//! commit ids. No I/O: the commit walk reads commits through the caller, which also says which
//! commits the local repository already has.

use super::Id;
use std::collections::{BTreeSet, HashMap};

/// git's INFINITE_DEPTH (`--unshallow` sends it as `option depth`).
pub const INFINITE: u64 = 2_147_483_647;

/// What git asked for (`option depth`, `option deepen-relative`), or nothing (a plain fetch
/// into a shallow repository).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deepen {
    /// No depth asked: stop at every commit the repository has.
    Plain,
    /// `--depth N`: N commits from each tip, whatever the repository has.
    Depth(u64),
    /// `--deepen N`: N more commits below the current boundaries.
    Relative(u64),
    /// `--unshallow`: everything down to the commits the repository has whole.
    Unshallow,
}

impl Deepen {
    pub fn new(depth: Option<u64>, relative: bool) -> Deepen {
        match depth {
            None | Some(0) => Deepen::Plain,
            Some(n) if n >= INFINITE => Deepen::Unshallow,
            Some(n) if relative => Deepen::Relative(n),
            Some(n) => Deepen::Depth(n),
        }
    }

    /// The walk's starting points: (commit, commits to take on this path counting it,
    /// whether it is a boundary being deepened, which the walk never stops at).
    pub fn roots(&self, tips: &[Id], shallow: &BTreeSet<Id>) -> Vec<(u64, Id, bool)> {
        let mut roots: Vec<(u64, Id, bool)> = match self {
            Deepen::Depth(n) => tips.iter().map(|t| (*n, *t, false)).collect(),
            _ => tips.iter().map(|t| (u64::MAX, *t, false)).collect(),
        };
        match self {
            Deepen::Relative(n) => {
                roots.extend(shallow.iter().map(|s| (n.saturating_add(1), *s, true)))
            }
            Deepen::Unshallow => roots.extend(shallow.iter().map(|s| (u64::MAX, *s, true))),
            _ => {}
        }
        roots
    }

    /// Whether the walk stops at `id` without reading it. Plain and relative fetches stop at
    /// every commit the repository has (reached from a tip); `--unshallow` passes through the
    /// boundaries; `--depth` passes through everything, since the depth counts from the tips.
    pub fn stops_at(&self, has: bool, is_shallow: bool, is_root_of_deepen: bool) -> bool {
        match self {
            Deepen::Plain => has,
            Deepen::Relative(_) => has && !is_root_of_deepen,
            Deepen::Unshallow => has && !is_shallow,
            Deepen::Depth(_) => false,
        }
    }
}

/// A partial clone's filter (`option filter <spec>`), as far as the helper honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `blob:none`: commits and trees, no blobs.
    BlobNone,
    /// `tree:0`: commits (and tags) only.
    TreeZero,
    /// `blob:limit=<n>`: commits, trees, and the blobs smaller than n bytes.
    BlobLimit(u64),
}

impl Filter {
    /// `None` for a spec the helper cannot honour (`sparse:`, `combine:`, `tree:<n>` but 0,
    /// `object:type`).
    pub fn parse(spec: &str) -> Option<Filter> {
        match spec {
            "blob:none" => Some(Filter::BlobNone),
            "tree:0" => Some(Filter::TreeZero),
            _ => {
                // git's `blob:limit=<n>[kmg]` (git_parse_ulong: powers of 1024).
                let n = spec.strip_prefix("blob:limit=")?.to_ascii_lowercase();
                let (digits, unit) = match n.as_bytes().last()? {
                    b'k' => (&n[..n.len() - 1], 1u64 << 10),
                    b'm' => (&n[..n.len() - 1], 1 << 20),
                    b'g' => (&n[..n.len() - 1], 1 << 30),
                    _ => (&n[..], 1),
                };
                digits
                    .parse::<u64>()
                    .ok()?
                    .checked_mul(unit)
                    .map(Filter::BlobLimit)
            }
        }
    }
}

/// The walk's outcome, for the shallow file: every commit read with the most commits it may
/// still take (its `rem`), and whether it has parents.
#[derive(Debug, Default)]
pub struct Walked {
    pub rem: HashMap<Id, u64>,
    pub has_parents: HashMap<Id, bool>,
}

/// The new shallow boundaries: the old ones whose parents were not walked, plus each walked
/// commit with parents that the depth cut off (rem 1). Sorted, as git writes them.
pub fn boundaries(old: &BTreeSet<Id>, walked: &Walked) -> BTreeSet<Id> {
    let cut = |id: &Id| walked.rem.get(id).is_none_or(|&rem| rem <= 1);
    let mut out: BTreeSet<Id> = old.iter().filter(|id| cut(id)).copied().collect();
    for (id, &rem) in &walked.rem {
        if rem <= 1 && walked.has_parents.get(id).copied().unwrap_or(false) {
            out.insert(*id);
        }
    }
    out
}

/// `$GIT_DIR/shallow` as git writes it: one hex id a line.
pub fn format(ids: &BTreeSet<Id>) -> String {
    ids.iter()
        .map(|id| format!("{}\n", hex::encode(id)))
        .collect()
}

/// The ids of a shallow file (lines that are not ids are skipped: git would refuse them).
pub fn parse(text: &str) -> BTreeSet<Id> {
    text.lines()
        .filter_map(|l| {
            let mut id = [0u8; 20];
            hex::decode_to_slice(l.trim(), &mut id).ok().map(|()| id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        [n; 20]
    }

    #[test]
    fn options_map_to_git_semantics() {
        assert_eq!(Deepen::new(None, false), Deepen::Plain);
        assert_eq!(Deepen::new(Some(1), false), Deepen::Depth(1));
        assert_eq!(Deepen::new(Some(2), true), Deepen::Relative(2));
        assert_eq!(Deepen::new(Some(INFINITE), false), Deepen::Unshallow);
        let shallow = BTreeSet::from([id(9)]);
        assert_eq!(
            Deepen::Relative(2).roots(&[id(1)], &shallow),
            vec![(u64::MAX, id(1), false), (3, id(9), true)]
        );
        assert!(!Deepen::Depth(3).stops_at(true, false, false));
        assert!(Deepen::Unshallow.stops_at(true, false, false));
        assert!(!Deepen::Unshallow.stops_at(true, true, false));
    }

    #[test]
    fn filters() {
        assert_eq!(Filter::parse("blob:none"), Some(Filter::BlobNone));
        assert_eq!(Filter::parse("tree:0"), Some(Filter::TreeZero));
        assert_eq!(
            Filter::parse("blob:limit=1k"),
            Some(Filter::BlobLimit(1024))
        );
        assert_eq!(
            Filter::parse("blob:limit=300"),
            Some(Filter::BlobLimit(300))
        );
        assert_eq!(
            Filter::parse("blob:limit=2M"),
            Some(Filter::BlobLimit(2 << 20))
        );
        assert_eq!(Filter::parse("blob:limit=x"), None);
        assert_eq!(Filter::parse("tree:1"), None);
        assert_eq!(Filter::parse("sparse:oid=abc"), None);
    }

    #[test]
    fn boundaries_keep_uncut_old_ones_and_add_cut_commits() {
        let old = BTreeSet::from([id(5), id(6)]);
        let mut walked = Walked::default();
        // 5 was deepened through (rem 3), 7 is cut with parents, 8 is a root commit.
        for (c, rem, parents) in [(5, 3, true), (7, 1, true), (8, 1, false)] {
            walked.rem.insert(id(c), rem);
            walked.has_parents.insert(id(c), parents);
        }
        assert_eq!(boundaries(&old, &walked), BTreeSet::from([id(6), id(7)]));
        let text = format(&BTreeSet::from([id(7), id(6)]));
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("0606"));
        assert_eq!(parse(&text), BTreeSet::from([id(6), id(7)]));
    }
}
