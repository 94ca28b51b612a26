//! Which local commits one upload-pack request names as `have`s, for a server that reads one
//! negotiation round only (a stock Hypha: docs/hypha.md §5, issue 23).
//!
//! Hypha's upload-pack walks back from each want and stops at a commit only if that very
//! commit was named as a have: it never marks a have's ancestors, never says which haves it
//! shares, and answers every round with a pack. So the one request must name the commits where
//! new history joins ours, without knowing the new history. The choice: every local tip, then,
//! along each line of history walked newest first, the next [`Limits::dense`] commits, then
//! commits at gaps growing by half (1, 2, 4, 7, 11, ... commits apart: git's `skipping`
//! negotiator's spacing, which it spreads over several rounds). A fork `d` commits below a
//! tip then costs at most about `d / 3` commits already held (Hypha sends each whole); the
//! usual fork, the remote-tracking tip itself or a commit just below it, costs none.
//!
//! Pure: the caller reads commits (gix) and peels refs to commits; no I/O here.

use gix::ObjectId;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Bounds of the walk and of the request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Commits named one by one below each tip before the gaps start.
    pub dense: u32,
    /// Haves in the request at most: each costs 50 bytes of request, and a server checks each.
    pub max_haves: usize,
    /// Commits read at most: the walk's cost on a huge history (gix reads about 100 000
    /// commits a second here), where the deepest gaps matter least.
    pub max_walk: usize,
}

/// 16 commits one by one: an amend or a rebase of the last commits, or a branch started a few
/// commits back, is a fork point named exactly. 30 haves cover a line of 2000 commits, 38 one
/// of 50 000; 512 haves (25 KiB of request) leave room for many branches.
pub const LIMITS: Limits = Limits {
    dense: 16,
    max_haves: 512,
    max_walk: 50_000,
};

/// The local repository as the walk reads it.
pub trait Commits {
    /// The parents and committer time (seconds) of commit `id`; `None` when the repository
    /// does not have it as a commit (beyond a shallow boundary, or not a commit at all).
    fn commit(&self, id: &ObjectId) -> Option<(Vec<ObjectId>, i64)>;
}

/// Where a line of history is in its sampling.
#[derive(Debug, Clone, Copy)]
struct Line {
    /// Haves this line has named so far.
    named: u32,
    /// Commits skipped between two haves from now on.
    gap: u64,
    /// Commits still to skip before the next have.
    countdown: u64,
}

impl Line {
    const TIP: Line = Line {
        named: 0,
        gap: 0,
        countdown: 0,
    };

    /// The line below a commit it named (`named`) or skipped.
    fn next(self, named: bool, dense: u32) -> Line {
        if !named {
            return Line {
                countdown: self.countdown - 1,
                ..self
            };
        }
        let count = self.named.saturating_add(1);
        let gap = if count < dense {
            0
        } else {
            self.gap + self.gap / 2 + 1
        };
        Line {
            named: count,
            gap,
            countdown: gap,
        }
    }

    /// Two lines meeting at one commit: the sooner have, and the sparser line after it (a
    /// tag or branch tip inside another line's history does not start dense again).
    fn merge(self, other: Line) -> Line {
        Line {
            named: self.named.max(other.named),
            gap: self.gap.max(other.gap),
            countdown: self.countdown.min(other.countdown),
        }
    }
}

/// The haves for one request: `tips` (commits, in any order) and the sampled commits below
/// them, newest first, at most [`Limits::max_haves`].
pub fn choose(tips: &[ObjectId], commits: &impl Commits, limits: &Limits) -> Vec<ObjectId> {
    let mut heap: BinaryHeap<(i64, ObjectId)> = BinaryHeap::new();
    let mut queued: HashMap<ObjectId, (Line, Vec<ObjectId>)> = HashMap::new();
    let mut done: HashSet<ObjectId> = HashSet::new();
    for tip in tips {
        if queued.contains_key(tip) {
            continue;
        }
        if let Some((parents, time)) = commits.commit(tip) {
            queued.insert(*tip, (Line::TIP, parents));
            heap.push((time, *tip));
        }
    }
    let mut haves = Vec::new();
    let mut walked = 0;
    while let Some((_, id)) = heap.pop() {
        let Some((line, parents)) = queued.remove(&id) else {
            continue;
        };
        done.insert(id);
        walked += 1;
        let named = line.countdown == 0;
        if named {
            haves.push(id);
            if haves.len() >= limits.max_haves {
                break;
            }
        }
        if walked >= limits.max_walk {
            break;
        }
        let below = line.next(named, limits.dense);
        for parent in parents {
            if done.contains(&parent) {
                continue;
            }
            if let Some((line, _)) = queued.get_mut(&parent) {
                *line = line.merge(below);
                continue;
            }
            if let Some((grand, time)) = commits.commit(&parent) {
                queued.insert(parent, (below, grand));
                heap.push((time, parent));
            }
        }
    }
    haves
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Commits by number: id = the number's bytes, time = the number.
    struct Graph(BTreeMap<u32, Vec<u32>>);

    fn id(n: u32) -> ObjectId {
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&n.to_be_bytes());
        ObjectId::from(id)
    }

    fn num(id: &ObjectId) -> u32 {
        let b = id.as_bytes();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    impl Commits for Graph {
        fn commit(&self, id: &ObjectId) -> Option<(Vec<ObjectId>, i64)> {
            let n = num(id);
            self.0
                .get(&n)
                .map(|ps| (ps.iter().map(|p| self::id(*p)).collect(), i64::from(n)))
        }
    }

    /// Commits 1..=n, each the child of the one before.
    fn linear(n: u32) -> Graph {
        Graph(
            (1..=n)
                .map(|i| (i, if i > 1 { vec![i - 1] } else { vec![] }))
                .collect(),
        )
    }

    fn nums(haves: &[ObjectId]) -> Vec<u32> {
        haves.iter().map(num).collect()
    }

    #[test]
    fn a_line_is_dense_below_its_tip_then_doubles_its_gaps() {
        let haves = choose(&[id(2000)], &linear(2000), &LIMITS);
        let mut want: Vec<u32> = (1985..=2000).rev().collect();
        want.extend([
            1983, 1980, 1975, 1967, 1955, 1937, 1910, 1869, 1807, 1714, 1574, 1364, 1049, 576,
        ]);
        assert_eq!(nums(&haves), want);
        // The gap below any fork is at most about its distance from the tip.
        for w in haves.windows(2) {
            let (upper, lower) = (num(&w[0]), num(&w[1]));
            assert!(
                upper - lower <= (2000 - upper).max(1) + 1,
                "{upper} -> {lower}"
            );
        }
    }

    #[test]
    fn every_tip_is_named_and_lines_meet_without_starting_over() {
        // main 1..=100; a tag on 70 and a branch tip on 95 inside it; a side branch
        // 1001..=1005 forked from 50.
        let mut g = linear(100);
        g.0.insert(1001, vec![50]);
        for i in 1002..=1005 {
            g.0.insert(i, vec![i - 1]);
        }
        let haves = choose(&[id(100), id(70), id(95), id(1005)], &g, &LIMITS);
        let got = nums(&haves);
        for tip in [100, 70, 95, 1005] {
            assert!(got.contains(&tip), "{tip} in {got:?}");
        }
        // The tag at 70 does not make 69..54 dense again: main's line is sparse by then.
        assert!(!got.contains(&69), "{got:?}");
        // Each commit once.
        let unique: HashSet<u32> = got.iter().copied().collect();
        assert_eq!(unique.len(), got.len());
        // The side branch is named one by one from its tip.
        assert!(got.contains(&1001) && got.contains(&1004), "{got:?}");
    }

    #[test]
    fn merges_walk_both_parents_and_shallow_boundaries_end_the_walk() {
        // 10 merges 5 (from 1..=4) and 9; 1 is beyond a shallow boundary (absent).
        let mut g = Graph(BTreeMap::new());
        g.0.insert(2, vec![1]);
        g.0.insert(3, vec![2]);
        g.0.insert(4, vec![3]);
        g.0.insert(5, vec![4]);
        g.0.insert(9, vec![3]);
        g.0.insert(10, vec![5, 9]);
        let haves = choose(&[id(10)], &g, &LIMITS);
        assert_eq!(nums(&haves), [10, 9, 5, 4, 3, 2]);
        assert!(choose(&[id(1)], &g, &LIMITS).is_empty());
    }

    #[test]
    fn limits_bound_the_request_and_the_walk() {
        let few = Limits {
            dense: 8,
            max_haves: 5,
            max_walk: 1_000,
        };
        assert_eq!(choose(&[id(2000)], &linear(2000), &few).len(), 5);
        let short = Limits {
            dense: 100,
            max_haves: 500,
            max_walk: 30,
        };
        assert_eq!(choose(&[id(2000)], &linear(2000), &short).len(), 30);
    }
}
