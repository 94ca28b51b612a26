use super::*;
use crate::pack::entries::apply_delta;
use proptest::prelude::*;

/// A delta from `base` to the result of `ops`: each a copy of `base[start..start + len]`
/// (clamped into it) or an insert of bytes. Copies of any size up to 3 bytes' worth, as git
/// reads them; inserts of 1 to 127 bytes.
fn delta_of(base: &[u8], ops: &[Op]) -> (Vec<u8>, Vec<u8>) {
    let mut result = Vec::new();
    let mut body = Vec::new();
    for op in ops {
        match op {
            Op::Copy(start, len) if !base.is_empty() => {
                let start = start % base.len();
                let len = (*len).clamp(1, base.len() - start);
                result.extend_from_slice(&base[start..start + len]);
                let op_at = body.len();
                body.push(0x80);
                for bit in 0..4 {
                    let byte = (start >> (8 * bit)) as u8;
                    if byte != 0 {
                        body[op_at] |= 1 << bit;
                        body.push(byte);
                    }
                }
                let size = if len == 0x10000 { 0 } else { len };
                for bit in 0..3 {
                    let byte = (size >> (8 * bit)) as u8;
                    if byte != 0 {
                        body[op_at] |= 0x10 << bit;
                        body.push(byte);
                    }
                }
            }
            Op::Copy(..) => {}
            Op::Insert(bytes) => {
                for chunk in bytes.chunks(0x7f) {
                    result.extend_from_slice(chunk);
                    body.push(chunk.len() as u8);
                    body.extend_from_slice(chunk);
                }
            }
        }
    }
    let mut delta = Vec::new();
    varint(base.len() as u64, &mut delta);
    varint(result.len() as u64, &mut delta);
    delta.extend_from_slice(&body);
    (delta, result)
}

#[derive(Debug, Clone)]
enum Op {
    Copy(usize, usize),
    Insert(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<usize>(), 1usize..0x12000).prop_map(|(s, l)| Op::Copy(s, l)),
        1 => proptest::collection::vec(any::<u8>(), 1..300).prop_map(Op::Insert),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Composing a chain gives one delta that makes, from the root, what applying the chain
    /// one delta after another makes.
    #[test]
    fn a_composed_chain_makes_what_the_chain_makes(
        root in proptest::collection::vec(any::<u8>(), 0..0x30000),
        chain in proptest::collection::vec(proptest::collection::vec(op(), 1..12), 1..8),
    ) {
        let mut composer = Composer::new(root.len() as u64, 1 << 20).expect("small root");
        let mut version = root.clone();
        for ops in &chain {
            let (delta, next) = delta_of(&version, ops);
            prop_assert_eq!(&apply_delta(&version, &delta, u64::MAX).expect("applies"), &next);
            composer.apply(&delta).expect("composes");
            version = next;
        }
        prop_assert_eq!(composer.size(), version.len() as u64);
        let composed = composer.encode();
        prop_assert_eq!(apply_delta(&root, &composed, u64::MAX).expect("applies"), version);
    }

    /// Bytes that are not a delta of the version are refused, or compose to what the
    /// version-by-version application makes: never a panic, never a wrong result.
    #[test]
    fn any_bytes_compose_as_they_apply(
        root in proptest::collection::vec(any::<u8>(), 0..300),
        delta in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut composer = Composer::new(root.len() as u64, 1 << 20).expect("small root");
        match (composer.apply(&delta), apply_delta(&root, &delta, 1 << 20)) {
            (Ok(()), Ok(made)) => {
                prop_assert_eq!(apply_delta(&root, &composer.encode(), u64::MAX).expect("applies"), made);
            }
            (Err(_), Err(_)) => prop_assert_eq!(composer.size(), root.len() as u64),
            (composed, applied) => prop_assert!(false, "compose {:?}, apply {:?}", composed, applied.map(|v| v.len())),
        }
    }
}

/// A version of the whole root copied twice per delta doubles its pieces at every link (in
/// the worst order, no two join): the bound refuses the chain, and nothing grows past it.
#[test]
fn pieces_that_multiply_are_refused_at_the_bound() {
    let root: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let mut composer = Composer::new(root.len() as u64, 1 << 20).expect("small root");
    let mut version = root.clone();
    let mut refused = false;
    for _ in 0..40 {
        // Each byte copied on its own, reversed: every piece becomes many.
        let len = version.len();
        let ops: Vec<Op> = (0..len.min(70_000))
            .rev()
            .step_by(2)
            .map(|s| Op::Copy(s, 1))
            .chain(std::iter::once(Op::Copy(0, len)))
            .collect();
        let (delta, next) = delta_of(&version, &ops);
        match composer.apply(&delta) {
            Ok(()) => version = next,
            Err(DeltaError::TooLarge { .. }) => {
                refused = true;
                break;
            }
            Err(DeltaError::Bad) => panic!("a valid delta refused as bad"),
        }
        assert!(composer.pieces.len() <= MAX_PIECES);
    }
    assert!(refused, "the pieces never reached the bound");
    // What was composed before the refusal still stands.
    assert_eq!(
        apply_delta(&root, &composer.encode(), u64::MAX).expect("applies"),
        version
    );
}

#[test]
fn inserts_past_the_bound_are_refused() {
    let root = vec![1u8; 100];
    let mut composer = Composer::new(100, 200).expect("small root");
    let (delta, _) = delta_of(&root, &[Op::Copy(0, 100), Op::Insert(vec![2; 150])]);
    composer.apply(&delta).expect("within the bound");
    let (delta, _) = delta_of(&[1u8; 250], &[Op::Copy(0, 250), Op::Insert(vec![3; 60])]);
    assert!(matches!(
        composer.apply(&delta),
        Err(DeltaError::TooLarge { .. })
    ));
    assert_eq!(composer.size(), 250);
    assert!(Composer::new(MAX_ROOT + 1, 1).is_err());
}

/// A long chain of tiny deltas, each one copy of the whole version, over a version of many
/// pieces: every link visits all of them, and the chain is refused once the visits pass
/// their bound, whatever its length.
#[test]
fn a_long_chain_of_whole_copies_is_refused_at_the_visits_bound() {
    let root: Vec<u8> = (0..=255u8).cycle().take(1 << 17).collect();
    let mut composer = Composer::new(root.len() as u64, 1 << 20).expect("small root");
    // Every other byte of the root, one copy each: some 65,000 pieces that never join.
    let ops: Vec<Op> = (0..root.len())
        .step_by(2)
        .take(MAX_PIECES - 1)
        .map(|s| Op::Copy(s, 1))
        .collect();
    let (delta, version) = delta_of(&root, &ops);
    composer.apply(&delta).expect("within the pieces' bound");
    let pieces = composer.pieces.len();
    assert!(pieces > MAX_PIECES / 2, "{pieces} pieces");
    let (whole_copy, same) = delta_of(&version, &[Op::Copy(0, version.len())]);
    assert_eq!(same, version);
    let mut links = 1;
    let refused = loop {
        match composer.apply(&whole_copy) {
            Ok(()) => links += 1,
            Err(e) => break e,
        }
        assert!(links < 1000, "never refused");
    };
    assert!(
        matches!(refused, DeltaError::TooLarge { .. }),
        "{refused:?}"
    );
    assert!(
        links * pieces >= MAX_VISITS - pieces,
        "refused early: {links} links"
    );
    assert!(
        links * pieces <= MAX_VISITS + pieces,
        "refused late: {links} links"
    );
    assert_eq!(composer.size(), version.len() as u64);
}
