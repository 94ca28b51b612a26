//! Which packs a geometric compaction merges, and when the server's auto-gc starts one: pure
//! functions of the pack sizes.
//!
//! Merging everything re-downloads and repacks the whole repository every time; after many
//! pushes of one small pack each, only the small packs need merging. The rule (close to
//! `git repack --geometric=2`, but stated over all smaller packs, not only the next one):
//! sort packs by size; a pack may stay as it is only if it is at least [`FACTOR`] times the
//! size of all smaller packs together. The packs merged are the smallest ones, up to and
//! including the largest pack that breaks the rule.
//!
//! Why this shape:
//! - the merged pack is at most the sum of its inputs, hence smaller than half of every pack
//!   kept, so after a merge the rule holds everywhere and the next run merges nothing until
//!   new packs arrive (tested below);
//! - packs that stay each hold at least twice all smaller ones, so the sizes grow at least
//!   threefold: a repository of B bytes keeps at most about log3(B) packs after a merge;
//! - a pack of size M is merged again only once the packs smaller than it add up to more
//!   than M/2, so each byte is rewritten O(log B) times over a repository's life, not once
//!   per compaction.

/// Every pack kept must be at least this many times all smaller packs together.
pub const FACTOR: u64 = 2;

/// Live packs a repository may have before a push triggers a compaction (the server's
/// `--auto-gc-packs` default, and `git hypha gc --auto`'s).
pub const AUTO_MAX_PACKS: usize = 20;

/// Bytes of packs the geometric rule would merge at which a push triggers a compaction
/// whatever the pack count: two edit-pushes whose packs hold 2 MiB or more each (a whole copy
/// of the edited file each; an 8 MiB CSV packs to 3.3 MB), while the small pushes of source
/// code wait for the count (`--auto-gc-bytes` default, and `git hypha gc --auto`'s).
pub const AUTO_MIN_BYTES: u64 = 4 << 20;

/// Whether the server's auto-gc should compact a repository whose live packs have `sizes`:
/// when there are more than `max_packs` of them (many small pushes), or when the packs
/// [`geometric`] would merge hold at least `min_bytes` together (`0`: never by bytes).
///
/// Why bytes too: a push of an edited large file adds a pack with a whole copy of it, and a
/// clone downloads every copy until they are merged, where git's delta search keeps one copy
/// and small deltas. Counting packs alone let 19 such copies pile up (issue 13: 30 edit-pushes
/// of an 8 MiB CSV cloned as 33.9 MB, with `git daemon` at 6.8 MB). Merging costs about what it
/// merges in transfer, so small packs still wait for the count, and the geometric rule bounds
/// how often a byte is rewritten whether or not the merge shrinks anything.
pub fn due(sizes: &[u64], max_packs: usize, min_bytes: u64) -> bool {
    if sizes.len() > max_packs {
        return true;
    }
    let chosen: u128 = geometric(sizes)
        .into_iter()
        .map(|i| u128::from(sizes[i]))
        .sum();
    min_bytes > 0 && chosen > 0 && chosen >= u128::from(min_bytes)
}

/// Indices into `sizes` of the packs to merge, smallest first; empty when the sizes already
/// follow the rule (a single pack, or none, always does).
pub fn geometric(sizes: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    // Ties broken by position, so that the same listing always gives the same choice.
    order.sort_by_key(|&i| (sizes[i], i));
    let mut smaller: u128 = 0;
    let mut last_breaking = None;
    for (rank, &i) in order.iter().enumerate() {
        if u128::from(sizes[i]) < u128::from(FACTOR) * smaller {
            last_breaking = Some(rank);
        }
        smaller += u128::from(sizes[i]);
    }
    match last_breaking {
        // The smallest pack never breaks the rule (nothing is smaller), so a breaking rank
        // is at least 1 and the merge takes two packs or more.
        Some(rank) => order[..=rank].to_vec(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn merged_sizes(sizes: &[u64]) -> Vec<u64> {
        let mut out: Vec<u64> = geometric(sizes).into_iter().map(|i| sizes[i]).collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn nothing_to_merge_in_zero_or_one_pack() {
        assert!(geometric(&[]).is_empty());
        assert!(geometric(&[5]).is_empty());
    }

    #[test]
    fn equal_packs_are_all_merged() {
        assert_eq!(merged_sizes(&[10; 20]), vec![10; 20]);
        assert_eq!(merged_sizes(&[7, 7]), vec![7, 7]);
    }

    #[test]
    fn a_large_pack_is_left_alone_while_small_ones_merge() {
        let mut sizes = vec![1_000_000];
        sizes.extend([900, 1000, 1100, 1000]);
        assert_eq!(merged_sizes(&sizes), vec![900, 1000, 1000, 1100]);
        assert!(!geometric(&sizes).contains(&0), "the big pack stays");
    }

    #[test]
    fn a_progression_with_factor_three_is_kept() {
        assert!(geometric(&[1, 3, 9, 27, 81]).is_empty());
        assert!(
            geometric(&[81, 1, 27, 3, 9]).is_empty(),
            "order does not matter"
        );
    }

    #[test]
    fn doubling_is_not_enough_once_the_smaller_packs_add_up() {
        // 4 < 2 * (1 + 2): the three merge; 100 >= 2 * 7 stays.
        assert_eq!(merged_sizes(&[1, 2, 4, 100]), vec![1, 2, 4]);
    }

    #[test]
    fn a_small_pack_breaking_the_rule_takes_every_smaller_one_with_it() {
        // 100 >= 2 * 50 follows the rule, but 200 < 2 * (50 + 100) does not, and takes both.
        assert_eq!(merged_sizes(&[50, 200, 100, 5000]), vec![50, 100, 200]);
    }

    #[test]
    fn due_on_pack_count_as_before() {
        assert!(!due(&[10; 20], 20, 0));
        assert!(due(&[10; 21], 20, 0));
        // Over the count even when the sizes follow the rule: the compaction then only purges.
        assert!(due(&[1, 3, 9], 2, 0));
    }

    #[test]
    fn due_on_bytes_when_large_packs_would_merge() {
        const MIB: u64 = 1 << 20;
        // Two edit-pushes of a large file: a whole copy each, merged at once.
        assert!(due(&[3 * MIB + 5, 3 * MIB], 20, 4 * MIB));
        // A big pack and small pushes: the rule keeps the big one, the small ones wait.
        assert!(!due(&[40 * MIB, 100_000, 120_000], 20, 4 * MIB));
        // Large packs that already follow the rule are left alone.
        assert!(!due(&[5 * MIB, 10 * MIB, 30 * MIB], 20, 4 * MIB));
        // 0 turns the byte trigger off.
        assert!(!due(&[3 * MIB, 3 * MIB], 20, 0));
        assert!(!due(&[], 20, 1));
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        assert!(due(&[u64::MAX, u64::MAX], 20, u64::MAX));
        assert_eq!(
            merged_sizes(&[u64::MAX, u64::MAX]),
            vec![u64::MAX, u64::MAX]
        );
    }

    proptest! {
        #[test]
        fn the_rule_holds_after_a_merge_and_a_second_run_merges_nothing(
            sizes in proptest::collection::vec(1u64..1_000_000, 0..40),
            shrink in 1u64..=100,
        ) {
            let chosen = geometric(&sizes);
            prop_assert!(chosen.len() != 1, "a merge takes two packs or none");
            let merged_total: u64 = chosen.iter().map(|&i| sizes[i]).sum();
            // Everything kept is at least FACTOR times all smaller packs, merged or not.
            for (i, &size) in sizes.iter().enumerate() {
                if chosen.contains(&i) {
                    continue;
                }
                let smaller: u64 = sizes
                    .iter()
                    .enumerate()
                    .filter(|&(j, &s)| (s, j) < (size, i))
                    .map(|(_, &s)| s)
                    .sum();
                prop_assert!(size >= FACTOR * smaller, "{size} kept over {smaller} smaller");
                prop_assert!(chosen.iter().all(|&c| sizes[c] <= size), "merged packs are the smallest");
            }
            // The merged pack is at most the sum of its inputs (deltas only shrink it).
            let mut after: Vec<u64> = sizes
                .iter()
                .enumerate()
                .filter(|(i, _)| !chosen.contains(i))
                .map(|(_, &s)| s)
                .collect();
            if !chosen.is_empty() {
                after.push((merged_total * shrink / 100).max(1));
            }
            prop_assert!(geometric(&after).is_empty(), "stable after a merge: {after:?}");
        }

        #[test]
        fn no_shorter_prefix_would_do(sizes in proptest::collection::vec(1u64..1000, 2..30)) {
            let chosen = geometric(&sizes);
            if let Some(&largest) = chosen.last() {
                // The largest merged pack itself breaks the rule: merging fewer would leave it.
                let smaller: u64 = chosen[..chosen.len() - 1].iter().map(|&i| sizes[i]).sum();
                prop_assert!(sizes[largest] < FACTOR * smaller);
            }
        }
    }
}
