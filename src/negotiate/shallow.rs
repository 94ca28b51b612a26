//! Which commits a shallow fetch takes, and what `$GIT_DIR/shallow` says afterwards: git's
//! `--depth`, `--deepen` and `--unshallow` rules (fetch-pack, upload-pack's `deepen`), and
//! `--shallow-since` / `--shallow-exclude` (upload-pack's `deepen_by_rev_list`), over commit
//! ids. No I/O: the commit walk reads commits through the caller, which also says which
//! commits the local repository already has; the date text is parsed by the caller (git's
//! approxidate).

use gix::ObjectId;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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
    /// `--shallow-since`, `--shallow-exclude`: the commits a [`Cut`] takes, whatever the
    /// repository has (upload-pack's rev-list runs over the server's whole history).
    Cut,
}

/// upload-pack's refusal when `deepen` meets `deepen-since` or `deepen-not` ("deepen and
/// deepen-since (or deepen-not) cannot be used together"), in the user's option names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "--depth, --deepen and --unshallow cannot be used together with --shallow-since or \
     --shallow-exclude"
)]
pub struct Conflict;

impl Deepen {
    pub fn new(depth: Option<u64>, relative: bool) -> Deepen {
        match depth {
            None | Some(0) => Deepen::Plain,
            Some(n) if n >= INFINITE => Deepen::Unshallow,
            Some(n) if relative => Deepen::Relative(n),
            Some(n) => Deepen::Depth(n),
        }
    }

    /// As [`Deepen::new`], with `cut` when `option deepen-since` or `deepen-not` came. git's
    /// fetch sends `--depth` (and `--deepen`, `--unshallow`) along with them, and its
    /// upload-pack refuses the pair: so does this.
    pub fn with_cut(depth: Option<u64>, relative: bool, cut: bool) -> Result<Deepen, Conflict> {
        match (cut, depth) {
            (true, Some(_)) => Err(Conflict),
            (true, None) => Ok(Deepen::Cut),
            (false, _) => Ok(Deepen::new(depth, relative)),
        }
    }

    /// The walk's starting points: (commit, commits to take on this path counting it,
    /// whether it is a boundary being deepened, which the walk never stops at).
    pub fn roots(
        &self,
        tips: &[ObjectId],
        shallow: &BTreeSet<ObjectId>,
    ) -> Vec<(u64, ObjectId, bool)> {
        let mut roots: Vec<(u64, ObjectId, bool)> = match self {
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
            Deepen::Depth(_) | Deepen::Cut => false,
        }
    }
}

/// What `--shallow-since` and `--shallow-exclude` keep: upload-pack's
/// `rev-list --max-age=<since> --not <excluded refs> --not <wants>`. A commit is taken when
/// its committer date is at least `since` and no excluded ref reaches it; the walk does not
/// pass a commit it does not take.
///
/// With both options and a clock-skewed history (a parent newer than its child) git's
/// limited rev-list also drops the ancestors of every too-old commit; here a commit reached
/// through newer commits only is still taken. Histories with ordered dates agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cut {
    /// Unix seconds: commits older than this are not taken.
    pub since: Option<i64>,
    /// Every commit reachable from the excluded refs.
    pub excluded: HashSet<ObjectId>,
}

impl Cut {
    pub fn takes(&self, id: &ObjectId, committer_time: i64) -> bool {
        self.since.is_none_or(|t| committer_time >= t) && !self.excluded.contains(id)
    }
}

/// The boundaries after a cut (shallow.c's `get_shallow_commits_by_rev_list` and
/// upload-pack's `send_unshallow`): each taken commit with a parent that was not taken, and
/// the old boundaries not taken. `taken` maps each taken commit to its parents. `None` when
/// nothing was taken: upload-pack dies then ("no commits selected for shallow requests").
pub fn cut_boundaries(
    old: &BTreeSet<ObjectId>,
    taken: &HashMap<ObjectId, Vec<ObjectId>>,
) -> Option<BTreeSet<ObjectId>> {
    if taken.is_empty() {
        return None;
    }
    let mut out: BTreeSet<ObjectId> = old
        .iter()
        .filter(|id| !taken.contains_key(*id))
        .copied()
        .collect();
    for (id, parents) in taken {
        if parents.iter().any(|p| !taken.contains_key(p)) {
            out.insert(*id);
        }
    }
    Some(out)
}

/// Why an excluded ref name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// No rule names a listed ref.
    Unknown,
    /// More than one rule does (these full names).
    Ambiguous(Vec<String>),
}

/// The id `--shallow-exclude=<name>` stands for, by git's dwim rules (refs.c
/// `ref_rev_parse_rules`) over the remote's listing, as upload-pack's `expand_ref` resolves a
/// `deepen-not`: exactly one rule may match. `head` is the symref HEAD points at.
pub fn resolve_exclude(
    name: &str,
    refs: &BTreeMap<String, String>,
    head: Option<&str>,
) -> Result<String, Unresolved> {
    let lookup = |full: &str| -> Option<&String> {
        match full {
            "HEAD" => head.and_then(|target| refs.get(target)),
            _ => refs.get(full),
        }
    };
    let mut found: Vec<(String, String)> = Vec::new();
    for full in [
        name.to_owned(),
        format!("refs/{name}"),
        format!("refs/tags/{name}"),
        format!("refs/heads/{name}"),
        format!("refs/remotes/{name}"),
        format!("refs/remotes/{name}/HEAD"),
    ] {
        if let Some(id) = lookup(&full) {
            if !found.iter().any(|(f, _)| *f == full) {
                found.push((full, id.clone()));
            }
        }
    }
    match found.len() {
        0 => Err(Unresolved::Unknown),
        1 => Ok(found.remove(0).1),
        _ => Err(Unresolved::Ambiguous(
            found.into_iter().map(|(f, _)| f).collect(),
        )),
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
    pub rem: HashMap<ObjectId, u64>,
    pub has_parents: HashMap<ObjectId, bool>,
}

/// The new shallow boundaries: the old ones whose parents were not walked, plus each walked
/// commit with parents that the depth cut off (rem 1). Sorted, as git writes them.
pub fn boundaries(old: &BTreeSet<ObjectId>, walked: &Walked) -> BTreeSet<ObjectId> {
    let cut = |id: &ObjectId| walked.rem.get(id).is_none_or(|&rem| rem <= 1);
    let mut out: BTreeSet<ObjectId> = old.iter().filter(|id| cut(id)).copied().collect();
    for (id, &rem) in &walked.rem {
        if rem <= 1 && walked.has_parents.get(id).copied().unwrap_or(false) {
            out.insert(*id);
        }
    }
    out
}

/// `$GIT_DIR/shallow` after a fetch from a server that may never say `unshallow` (a stock
/// Hypha, docs/hypha.md §4): the old boundaries and the server's `shallow` lines, less its
/// `unshallow` lines, and less every old boundary whose parents the repository now holds
/// (`has_parents`): those parents are whole or boundaries themselves, so the cut is gone, as
/// upload-pack's own `unshallow` would have said. The server's new boundaries stay even over
/// parents the repository holds: `--depth` on a whole repository cuts it, as in git.
pub fn after_fetch(
    old: &BTreeSet<ObjectId>,
    shallow: &[ObjectId],
    unshallow: &[ObjectId],
    has_parents: impl Fn(&ObjectId) -> bool,
) -> BTreeSet<ObjectId> {
    let told: BTreeSet<ObjectId> = shallow.iter().copied().collect();
    let kept = old
        .iter()
        .filter(|id| told.contains(*id) || !has_parents(id))
        .copied();
    kept.chain(told.iter().copied())
        .filter(|id| !unshallow.contains(id))
        .collect()
}

/// `$GIT_DIR/shallow` as git writes it: one hex id a line.
pub fn format(ids: &BTreeSet<ObjectId>) -> String {
    ids.iter().map(|id| format!("{id}\n")).collect()
}

/// The ids of a shallow file (lines that are not ids are skipped: git would refuse them).
pub fn parse(text: &str) -> BTreeSet<ObjectId> {
    text.lines()
        .filter_map(|l| super::parse_id(l.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from([n; 20])
    }

    #[test]
    fn after_fetch_drops_boundaries_whose_parents_came() {
        let old = BTreeSet::from([id(1), id(2), id(3)]);
        // 1's parents came; 2's did not; the server cut at 4 and (in git) unshallowed 3.
        let has = |c: &ObjectId| *c == id(1) || *c == id(4);
        assert_eq!(
            after_fetch(&old, &[id(4)], &[id(3)], has),
            BTreeSet::from([id(2), id(4)])
        );
        // `--unshallow` from a Hypha: no lines at all, every parent here now.
        assert!(after_fetch(&old, &[], &[], |_| true).is_empty());
        // A boundary the server names again stays, whatever is here.
        assert_eq!(
            after_fetch(&old, &[id(2)], &[], |_| true),
            BTreeSet::from([id(2)])
        );
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
    fn cut_takes_new_commits_outside_the_excluded_history() {
        assert_eq!(Deepen::with_cut(None, false, true), Ok(Deepen::Cut));
        assert_eq!(Deepen::with_cut(Some(1), false, true), Err(Conflict));
        assert_eq!(Deepen::with_cut(Some(INFINITE), false, true), Err(Conflict));
        assert_eq!(
            Deepen::with_cut(Some(2), true, false),
            Ok(Deepen::Relative(2))
        );
        assert!(!Deepen::Cut.stops_at(true, false, false));
        let cut = Cut {
            since: Some(100),
            excluded: HashSet::from([id(3)]),
        };
        assert!(cut.takes(&id(1), 100));
        assert!(!cut.takes(&id(1), 99));
        assert!(!cut.takes(&id(3), 500));
        assert!(Cut::default().takes(&id(3), 0));
    }

    #[test]
    fn cut_boundaries_are_taken_commits_with_an_untaken_parent() {
        // 1 <- 2 <- 3 (merge of 2 and 7) <- 4; taken: 4, 3, 2; old boundaries 2 and 9.
        let taken = HashMap::from([
            (id(4), vec![id(3)]),
            (id(3), vec![id(2), id(7)]),
            (id(2), vec![id(1)]),
        ]);
        let old = BTreeSet::from([id(2), id(9)]);
        assert_eq!(
            cut_boundaries(&old, &taken),
            Some(BTreeSet::from([id(2), id(3), id(9)]))
        );
        // A root commit taken is no boundary; an old boundary deepened through is dropped.
        let taken = HashMap::from([(id(2), vec![id(1)]), (id(1), vec![])]);
        assert_eq!(
            cut_boundaries(&BTreeSet::from([id(2)]), &taken),
            Some(BTreeSet::new())
        );
        assert_eq!(cut_boundaries(&old, &HashMap::new()), None);
    }

    #[test]
    fn excluded_names_resolve_as_git_dwim_rules() {
        let refs = BTreeMap::from([
            ("refs/heads/main".to_owned(), "a".repeat(40)),
            ("refs/tags/v1.0".to_owned(), "b".repeat(40)),
            ("refs/heads/both".to_owned(), "c".repeat(40)),
            ("refs/tags/both".to_owned(), "d".repeat(40)),
        ]);
        let head = Some("refs/heads/main");
        for name in ["main", "heads/main", "refs/heads/main", "HEAD"] {
            assert_eq!(
                resolve_exclude(name, &refs, head),
                Ok("a".repeat(40)),
                "{name}"
            );
        }
        assert_eq!(resolve_exclude("v1.0", &refs, head), Ok("b".repeat(40)));
        assert_eq!(
            resolve_exclude("nope", &refs, head),
            Err(Unresolved::Unknown)
        );
        assert_eq!(
            resolve_exclude("HEAD", &refs, None),
            Err(Unresolved::Unknown)
        );
        assert_eq!(
            resolve_exclude("both", &refs, head),
            Err(Unresolved::Ambiguous(vec![
                "refs/tags/both".to_owned(),
                "refs/heads/both".to_owned()
            ]))
        );
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
