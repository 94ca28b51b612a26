//! Fetch decisions: which wants are still missing, which listed packs to download, and
//! whether a received pack is the one its idx describes (docs/design.md §5).
//!
//! git asks only for objects it lacks, so a pack whose idx lists a wanted id is needed without
//! asking the local object store (which after many pushes means loading hundreds of idx
//! files); a pack listing no wanted id is still needed if it holds any object we lack.
//! [`Known`] is the record of packs already seen from a remote: names are immutable, so a
//! name once fetched (or found to hold nothing we lack) needs no second look. Reading and
//! writing that record, and downloading, are the helper's business.

use super::parse_id;
use gix::ObjectId;
use std::collections::BTreeSet;

/// The packs seen from one remote. A cache: losing it costs a slower fetch, never a wrong one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    names: BTreeSet<String>,
}

impl Known {
    /// Nothing seen (a clone, a `--refetch`, or a lost record).
    pub fn none() -> Known {
        Known::default()
    }

    pub fn from_names(names: BTreeSet<String>) -> Known {
        Known { names }
    }

    pub fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Of `listed`, the names not seen yet, in listing order.
    pub fn unseen<'a>(&self, listed: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        listed.into_iter().filter(|n| !self.contains(n)).collect()
    }

    /// Remember `names` as seen.
    pub fn record<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.names.extend(names.into_iter().map(str::to_owned));
    }
}

/// The ids of the wanted `oids`, as idx files list them; a malformed oid is in no idx.
pub fn wanted_ids<'a>(oids: impl IntoIterator<Item = &'a str>) -> BTreeSet<ObjectId> {
    oids.into_iter().filter_map(parse_id).collect()
}

/// The wanted ids that a pack whose idx lists `listed` (sorted, as in an idx) holds.
pub fn covers(wanted: &BTreeSet<ObjectId>, listed: &[ObjectId]) -> Vec<ObjectId> {
    wanted
        .iter()
        .filter(|w| listed.binary_search(w).is_ok())
        .copied()
        .collect()
}

/// Whether a pack is worth downloading before looking at local objects: the caller says to
/// take it anyway (a clone; a pack the known-pack record may have hidden wrongly), or it holds
/// a wanted id. If not, it is still needed when [`lacks_any`] of its objects.
pub fn take_without_lookup(take: bool, covers: &[ObjectId]) -> bool {
    take || !covers.is_empty()
}

/// Whether any of `listed` is absent locally (`has` answers for one object).
pub fn lacks_any(listed: &[ObjectId], mut has: impl FnMut(&ObjectId) -> bool) -> bool {
    listed.iter().any(|id| !has(id))
}

/// Of `wants`, those no verified pack of this fetch covered: only these need a local lookup.
pub fn uncovered<'a, T>(
    wants: &'a [T],
    oid: impl Fn(&T) -> &str,
    covered: &BTreeSet<ObjectId>,
) -> Vec<&'a T> {
    wants
        .iter()
        .filter(|w| !parse_id(oid(w)).is_some_and(|id| covered.contains(&id)))
        .collect()
}

/// Of `uncovered`, those absent locally; a malformed oid is always missing.
pub fn missing<T>(
    uncovered: Vec<&T>,
    oid: impl Fn(&T) -> &str,
    mut has: impl FnMut(&ObjectId) -> bool,
) -> Vec<&T> {
    uncovered
        .into_iter()
        .filter(|w| parse_id(oid(w)).is_none_or(|id| !has(&id)))
        .collect()
}

/// The pack as received must hold exactly the objects the server's idx names: ids are
/// computed from content, so this catches an object whose content does not hash to its name,
/// and an idx that belongs to another pack. `None` when they agree; otherwise the first id
/// only one of the two sorted lists has (hex), or `"count"`.
pub fn first_difference(local: &[ObjectId], listed: &[ObjectId]) -> Option<String> {
    if local == listed {
        return None;
    }
    Some(
        listed
            .iter()
            .find(|id| local.binary_search(id).is_err())
            .or_else(|| local.iter().find(|id| listed.binary_search(id).is_err()))
            .map(ObjectId::to_string)
            .unwrap_or_else(|| "count".to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from([n; 20])
    }

    fn hex_of(n: u8) -> String {
        id(n).to_string()
    }

    #[test]
    fn known_packs_are_skipped_and_recorded() {
        let mut known = Known::none();
        assert_eq!(known.unseen(["pack-a", "pack-b"]), ["pack-a", "pack-b"]);
        known.record(["pack-a"]);
        assert_eq!(known.unseen(["pack-a", "pack-b"]), ["pack-b"]);
        assert!(known.contains("pack-a"));
        let again = Known::from_names(known.names().clone());
        assert_eq!(again, known);
    }

    #[test]
    fn wanted_ids_leave_out_malformed_oids() {
        let good = hex_of(7);
        let wanted = wanted_ids([good.as_str(), "nothex", "abc"]);
        assert_eq!(wanted, BTreeSet::from([id(7)]));
    }

    #[test]
    fn a_pack_listing_a_want_is_taken_without_lookup() {
        let wanted = BTreeSet::from([id(2), id(9)]);
        let listed = [id(1), id(2), id(3)];
        let covered = covers(&wanted, &listed);
        assert_eq!(covered, [id(2)]);
        assert!(take_without_lookup(false, &covered));
    }

    #[test]
    fn a_pack_holding_nothing_we_lack_is_skipped() {
        let wanted = BTreeSet::from([id(9)]);
        let listed = [id(1), id(2)];
        let covered = covers(&wanted, &listed);
        assert!(covered.is_empty());
        assert!(!take_without_lookup(false, &covered));
        let local = BTreeSet::from([id(1), id(2), id(3)]);
        assert!(!lacks_any(&listed, |id| local.contains(id)));
    }

    #[test]
    fn a_pack_holding_an_object_we_lack_is_taken() {
        let local = BTreeSet::from([id(1)]);
        assert!(lacks_any(&[id(1), id(2)], |id| local.contains(id)));
    }

    #[test]
    fn a_clone_takes_every_pack() {
        assert!(take_without_lookup(true, &[]));
    }

    #[test]
    fn missing_wants_are_those_neither_covered_nor_local() {
        let wants = [hex_of(1), hex_of(2), hex_of(3), "garbage".to_owned()];
        let covered = BTreeSet::from([id(1)]);
        let unsure = uncovered(&wants, |w| w.as_str(), &covered);
        assert_eq!(unsure, [&wants[1], &wants[2], &wants[3]]);
        let local = [id(2)];
        let left = missing(unsure, |w| w.as_str(), |oid| local.contains(oid));
        assert_eq!(left, [&wants[2], &wants[3]]);
    }

    #[test]
    fn all_wants_covered_needs_no_lookup() {
        let wants = [hex_of(1)];
        let unsure = uncovered(&wants, |w| w.as_str(), &BTreeSet::from([id(1)]));
        assert!(unsure.is_empty());
    }

    #[test]
    fn a_received_pack_must_hold_exactly_what_its_idx_lists() {
        assert_eq!(first_difference(&[id(1), id(2)], &[id(1), id(2)]), None);
        // Listed but not received.
        assert_eq!(first_difference(&[id(1)], &[id(1), id(2)]), Some(hex_of(2)));
        // Received but not listed.
        assert_eq!(first_difference(&[id(1), id(3)], &[id(1)]), Some(hex_of(3)));
        // Same ids, another count (a duplicate).
        assert_eq!(
            first_difference(&[id(1), id(1)], &[id(1)]),
            Some("count".to_owned())
        );
    }
}
