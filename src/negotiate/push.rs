//! Push decisions: what each `push [+]<src>:<dst>` line becomes, what the pack may leave out,
//! and what the server's compare-and-swap answer means to git (docs/protocol.md §3).
//!
//! git checks fast-forwards and leases against the refs the helper listed, but hands helpers
//! `fetch first` and `needs force` cases as ordinary push lines (transport-helper.c skips only
//! non-fast-forward, stale and already-exists), so the same rules are applied here, in git's
//! words. Each line's update compare-and-swaps against exactly the listed value (or the
//! lease), so a concurrent push makes ours fail instead of overwriting it. Ref-name rules,
//! building and uploading the pack are the helper's business.

use super::parse_id;
use gix::ObjectId;
use std::collections::BTreeMap;

/// What a push needs to know about the local repository.
pub trait Objects {
    /// Whether `id` is in the local object store.
    fn has(&self, id: &ObjectId) -> bool;
    /// The object `src` names (a ref, `HEAD~1`, a raw id), if any.
    fn resolve(&self, src: &str) -> Option<ObjectId>;
    /// The commit `id` peels to (itself, or a tag's target), if any.
    fn peel_to_commit(&self, id: &ObjectId) -> Option<ObjectId>;
    /// Whether the commit `ancestor` is reachable from the commit `descendant` (or is it).
    fn is_ancestor(&self, ancestor: &ObjectId, descendant: &ObjectId) -> bool;
}

/// One push line as git sent it.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// Empty deletes `dst`.
    pub src: &'a str,
    pub dst: &'a str,
    /// `+` in front.
    pub force: bool,
}

/// What one push line becomes once its source is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub dst: String,
    /// `None` deletes.
    pub new: Option<String>,
    /// The value we compare-and-swap against.
    pub old: Option<String>,
    /// Whether git sent a lease for this ref (a mismatch is then `stale info`).
    pub leased: bool,
}

/// Resolve one push line against the listed `refs` and git's `leases` (`option cas`: the
/// expected value, `None` = must not exist). `Err` is the status git gets (`error <dst> <why>`).
pub fn plan(
    refs: &BTreeMap<String, String>,
    leases: &BTreeMap<String, Option<String>>,
    line: Line<'_>,
    objects: &impl Objects,
) -> Result<Planned, String> {
    let current = refs.get(line.dst).cloned();
    let lease = leases.get(line.dst);
    if let Some(expected) = lease {
        if *expected != current {
            return Err("stale info".into());
        }
    }
    let new = if line.src.is_empty() {
        None
    } else {
        let id = objects
            .resolve(line.src)
            .ok_or_else(|| format!("src refspec {} does not match any object", line.src))?;
        Some(id)
    };
    // A lease replaces the fast-forward rules (it is a force, checked by value).
    if let (Some(old), Some(new), false, None) = (&current, new, line.force, lease) {
        if let Some(why) = fast_forward_refusal(line.dst, old, new, objects) {
            return Err(why.to_owned());
        }
    }
    Ok(Planned {
        dst: line.dst.to_owned(),
        new: new.map(|id| id.to_string()),
        old: lease.cloned().unwrap_or(current),
        leased: lease.is_some(),
    })
}

/// Why replacing `old` by `new` without force is refused, as `git push` decides it.
pub fn fast_forward_refusal(
    dst: &str,
    old: &str,
    new: ObjectId,
    objects: &impl Objects,
) -> Option<&'static str> {
    if dst.starts_with("refs/tags/") {
        return Some("already exists");
    }
    let Some(old) = parse_id(old) else {
        return Some("fetch first");
    };
    if old == new {
        return None;
    }
    if !objects.has(&old) {
        return Some("fetch first");
    }
    let (Some(old), Some(new)) = (objects.peel_to_commit(&old), objects.peel_to_commit(&new))
    else {
        return Some("needs force");
    };
    if objects.is_ancestor(&old, &new) {
        None
    } else {
        Some("non-fast forward")
    }
}

/// The remote tips we have: the pack leaves out everything they reach.
pub fn exclude<'a>(
    remote_tips: impl IntoIterator<Item = &'a String>,
    objects: &impl Objects,
) -> Vec<String> {
    remote_tips
        .into_iter()
        .filter(|oid| parse_id(oid).is_some_and(|id| objects.has(&id)))
        .cloned()
        .collect()
}

/// On a repository without HEAD (`has_head` false), point it at `main` if pushed, else at
/// the first branch pushed.
pub fn head_for_first_push(has_head: bool, planned: &[Planned]) -> Option<String> {
    if has_head {
        return None;
    }
    let branches: Vec<&str> = planned
        .iter()
        .filter(|p| p.new.is_some() && p.dst.starts_with("refs/heads/"))
        .map(|p| p.dst.as_str())
        .collect();
    branches
        .iter()
        .find(|b| **b == "refs/heads/main")
        .or(branches.first())
        .map(|b| b.to_string())
}

/// The server's answer for one ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    Ok,
    /// The compare-and-swap lost; the ref holds `current` (`None`: absent).
    Stale {
        current: Option<&'a str>,
    },
    /// Refused for another reason, in the server's words.
    Rejected {
        detail: Option<&'a str>,
    },
}

/// What git is told about `p` after `answer`: `Ok`, or `Err(why)` in git's words, so git
/// prints its usual hints for a lost compare-and-swap.
pub fn status(p: &Planned, answer: Answer<'_>, objects: &impl Objects) -> Result<(), String> {
    match answer {
        Answer::Ok => Ok(()),
        // The ref already holds what we push: an `update` retried after a lost answer (a
        // timeout) finds its own first attempt's work. That push did succeed.
        Answer::Stale { current } if current == p.new.as_deref() => Ok(()),
        Answer::Stale { .. } if p.leased => Err("stale info".into()),
        Answer::Stale { current } => match current.and_then(parse_id) {
            Some(id) if objects.has(&id) => Err("non-fast forward".into()),
            _ => Err("fetch first".into()),
        },
        Answer::Rejected { detail } => Err(detail.unwrap_or("rejected by the server").to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    /// A history of commits (each with its parents), tags pointing at commits, trees, and
    /// local refs.
    #[derive(Default)]
    struct Fake {
        parents: HashMap<ObjectId, Vec<ObjectId>>,
        tags: HashMap<ObjectId, ObjectId>,
        trees: BTreeSet<ObjectId>,
        refs: HashMap<String, ObjectId>,
    }

    fn id(n: u8) -> ObjectId {
        ObjectId::from([n; 20])
    }

    fn hex(n: u8) -> String {
        id(n).to_string()
    }

    impl Fake {
        /// 1 <- 2 <- 3 on main, 1 <- 4 on a side branch; tag object 5 -> 3; tree 6.
        fn history() -> Fake {
            let mut f = Fake::default();
            f.parents.insert(id(1), vec![]);
            f.parents.insert(id(2), vec![id(1)]);
            f.parents.insert(id(3), vec![id(2)]);
            f.parents.insert(id(4), vec![id(1)]);
            f.tags.insert(id(5), id(3));
            f.trees.insert(id(6));
            for (name, n) in [("main", 3), ("side", 4), ("old", 2), ("v1", 5), ("tree", 6)] {
                f.refs.insert(name.to_owned(), id(n));
            }
            f
        }
    }

    impl Objects for Fake {
        fn has(&self, id: &ObjectId) -> bool {
            self.parents.contains_key(id) || self.tags.contains_key(id) || self.trees.contains(id)
        }
        fn resolve(&self, src: &str) -> Option<ObjectId> {
            self.refs.get(src).copied().or_else(|| parse_id(src))
        }
        fn peel_to_commit(&self, id: &ObjectId) -> Option<ObjectId> {
            let id = self.tags.get(id).unwrap_or(id);
            self.parents.contains_key(id).then_some(*id)
        }
        fn is_ancestor(&self, ancestor: &ObjectId, descendant: &ObjectId) -> bool {
            let mut todo = vec![*descendant];
            while let Some(c) = todo.pop() {
                if c == *ancestor {
                    return true;
                }
                todo.extend(self.parents.get(&c).into_iter().flatten());
            }
            false
        }
    }

    fn remote(refs: &[(&str, u8)]) -> BTreeMap<String, String> {
        refs.iter().map(|(n, i)| (n.to_string(), hex(*i))).collect()
    }

    fn line<'a>(src: &'a str, dst: &'a str, force: bool) -> Line<'a> {
        Line { src, dst, force }
    }

    fn no_leases() -> BTreeMap<String, Option<String>> {
        BTreeMap::new()
    }

    /// What `plan` decides without leases, case by case: (what, the remote's refs, source,
    /// destination, `+`, the outcome as (old, new) or git's words). History: 1 <- 2 <- 3 on
    /// main, 1 <- 4 on side, tag 5 -> 3, tree 6 (see `Fake::history`).
    #[test]
    fn plans_without_leases() {
        type Outcome = Result<(Option<u8>, Option<u8>), &'static str>;
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, u8)],
            &'a str,
            &'a str,
            bool,
            Outcome,
        );
        let main = "refs/heads/main";
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("fast-forward, against the listed value", &[(main, 2)], "main", main, false, Ok((Some(2), Some(3)))),
            ("non-fast-forward", &[(main, 3)], "side", main, false, Err("non-fast forward")),
            ("non-fast-forward, forced", &[(main, 3)], "side", main, true, Ok((Some(3), Some(4)))),
            ("a remote tip we do not have", &[(main, 99)], "main", main, false, Err("fetch first")),
            ("the same value again", &[(main, 3)], "main", main, false, Ok((Some(3), Some(3)))),
            ("a non-commit over a commit", &[(main, 3)], "tree", main, false, Err("needs force")),
            // Tag 5 points at 3, a descendant of 2.
            ("an annotated tag peels to its commit", &[(main, 2)], "v1", main, false, Ok((Some(2), Some(5)))),
            ("an existing tag", &[("refs/tags/v1", 2)], "main", "refs/tags/v1", false, Err("already exists")),
            ("an existing tag, forced", &[("refs/tags/v1", 2)], "main", "refs/tags/v1", true, Ok((Some(2), Some(3)))),
            ("a new branch", &[], "main", "refs/heads/topic", false, Ok((None, Some(3)))),
            ("a new tag", &[], "main", "refs/tags/v2", false, Ok((None, Some(3)))),
            ("an unknown source", &[], "nope", "refs/heads/x", false, Err("src refspec nope does not match any object")),
            ("a delete, against the listed value", &[("refs/heads/old", 2)], "", "refs/heads/old", false, Ok((Some(2), None))),
        ];
        let f = Fake::history();
        for (what, listed, src, dst, force, outcome) in cases {
            let got = plan(&remote(listed), &no_leases(), line(src, dst, *force), &f).map(|p| {
                assert_eq!((p.dst.as_str(), p.leased), (*dst, false), "{what}");
                (p.old, p.new)
            });
            let want = outcome
                .map(|(old, new)| (old.map(hex), new.map(hex)))
                .map_err(str::to_owned);
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn a_malformed_remote_value_is_fetch_first() {
        let mut refs = BTreeMap::new();
        refs.insert("refs/heads/main".to_owned(), "zz".to_owned());
        let p = plan(
            &refs,
            &no_leases(),
            line("main", "refs/heads/main", false),
            &Fake::history(),
        );
        assert_eq!(p, Err("fetch first".into()));
    }

    #[test]
    fn a_lease_that_holds_forces_against_the_leased_value() {
        let refs = remote(&[("refs/heads/main", 3)]);
        let mut leases = BTreeMap::new();
        leases.insert("refs/heads/main".to_owned(), Some(hex(3)));
        // Not a fast-forward, no `+`: the lease is the force.
        let p = plan(
            &refs,
            &leases,
            line("side", "refs/heads/main", false),
            &Fake::history(),
        );
        assert_eq!(p.map(|p| (p.old, p.leased)), Ok((Some(hex(3)), true)));
    }

    #[test]
    fn a_stale_lease_is_stale_info() {
        let refs = remote(&[("refs/heads/main", 3)]);
        let f = Fake::history();
        let mut leases = BTreeMap::new();
        leases.insert("refs/heads/main".to_owned(), Some(hex(2)));
        let p = plan(&refs, &leases, line("side", "refs/heads/main", true), &f);
        assert_eq!(p, Err("stale info".into()));
        // A lease that the ref must not exist, on an existing ref.
        leases.insert("refs/heads/main".to_owned(), None);
        let p = plan(&refs, &leases, line("side", "refs/heads/main", false), &f);
        assert_eq!(p, Err("stale info".into()));
    }

    #[test]
    fn the_pack_excludes_only_remote_tips_we_have() {
        let refs = remote(&[
            ("refs/heads/a", 2),
            ("refs/heads/b", 99),
            ("refs/heads/c", 4),
        ]);
        assert_eq!(exclude(refs.values(), &Fake::history()), [hex(2), hex(4)]);
    }

    fn planned(dst: &str, new: Option<u8>) -> Planned {
        Planned {
            dst: dst.into(),
            new: new.map(hex),
            old: None,
            leased: false,
        }
    }

    #[test]
    fn first_push_points_head_at_main_else_the_first_branch() {
        let some = [
            planned("refs/tags/v1", Some(5)),
            planned("refs/heads/topic", Some(4)),
            planned("refs/heads/main", Some(3)),
        ];
        assert_eq!(
            head_for_first_push(false, &some),
            Some("refs/heads/main".into())
        );
        assert_eq!(
            head_for_first_push(false, &some[..2]),
            Some("refs/heads/topic".into())
        );
        assert_eq!(head_for_first_push(true, &some), None);
        // Deleting a branch or pushing only tags sets nothing.
        let none = [
            planned("refs/heads/x", None),
            planned("refs/tags/v1", Some(5)),
        ];
        assert_eq!(head_for_first_push(false, &none), None);
    }

    #[test]
    fn answers_in_gits_words() {
        let f = Fake::history();
        let p = planned("refs/heads/main", Some(3));
        assert_eq!(status(&p, Answer::Ok, &f), Ok(()));
        // Our own earlier attempt won (a retried update).
        let own = hex(3);
        assert_eq!(
            status(
                &p,
                Answer::Stale {
                    current: Some(&own)
                },
                &f
            ),
            Ok(())
        );
        // Someone else moved it to a commit we have, or to one we lack.
        let known = hex(4);
        assert_eq!(
            status(
                &p,
                Answer::Stale {
                    current: Some(&known)
                },
                &f
            ),
            Err("non-fast forward".into())
        );
        let unknown = hex(99);
        assert_eq!(
            status(
                &p,
                Answer::Stale {
                    current: Some(&unknown)
                },
                &f
            ),
            Err("fetch first".into())
        );
        assert_eq!(
            status(&p, Answer::Stale { current: None }, &f),
            Err("fetch first".into())
        );
        let leased = Planned {
            leased: true,
            ..p.clone()
        };
        assert_eq!(
            status(
                &leased,
                Answer::Stale {
                    current: Some(&known)
                },
                &f
            ),
            Err("stale info".into())
        );
        assert_eq!(
            status(
                &p,
                Answer::Rejected {
                    detail: Some("atomic push failed")
                },
                &f
            ),
            Err("atomic push failed".into())
        );
        assert_eq!(
            status(&p, Answer::Rejected { detail: None }, &f),
            Err("rejected by the server".into())
        );
        // A delete that lost to someone deleting it first: the ref is gone, as we wanted.
        let delete = planned("refs/heads/old", None);
        assert_eq!(status(&delete, Answer::Stale { current: None }, &f), Ok(()));
    }
}
