//! Property tests of log decoding (issue 13, "fuzzing"): whatever bytes a store hands back (a
//! torn write, a disk error, a record from a future version, an attacker's file), decoding a
//! round, a snapshot, a participant or a workflow answers `Ok` or a `FormatError`, never a
//! panic. The seeds are the real records of the checked-in version-1 log (`tests/data`), so
//! the mutations stay close to what a damaged log looks like.

use std::path::Path;

use coordinator::testing::format;
use proptest::prelude::*;
use serde_json::Value;

/// The values of one tree of the checked-in logs of versions 1 and 2.
fn fixture_values(tree: &str) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    for version in [1, 2] {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/log-v{version}.json"));
        let text = std::fs::read_to_string(path).expect("the checked-in log");
        let trees: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        let Some(records) = trees.get(tree).and_then(Value::as_array) else {
            continue;
        };
        values.extend(records.iter().map(|record| match &record[1] {
            Value::String(text) => text.as_bytes().to_vec(),
            binary => hex_decode(binary["hex"].as_str().unwrap()),
        }));
    }
    values.retain(|value| !value.is_empty());
    values
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The plans of the checked-in version-2 log, so that its event records decode in full.
fn fixture_plans() -> format::PlanTable {
    let plans = format::PlanTable::default();
    for record in fixture_values("plans") {
        let plan = format::decode_plan(&record).expect("a plan of the checked-in log");
        plans.insert(std::sync::Arc::new(plan));
    }
    plans
}

/// One way a stored record gets damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Only the first `n` bytes survive (a torn write).
    Truncate(usize),
    /// One byte changes.
    Flip { at: usize, to: u8 },
    /// Bytes appear in the middle.
    Insert { at: usize, bytes: Vec<u8> },
    /// A different format version byte.
    Version(u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, to)| Damage::Flip { at, to }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        any::<u8>().prop_map(Damage::Version),
    ]
}

fn damaged(record: &[u8], damage: &Damage) -> Vec<u8> {
    let mut bytes = record.to_vec();
    match damage {
        Damage::Truncate(n) => bytes.truncate(n % (bytes.len() + 1)),
        Damage::Flip { at, to } => {
            let at = at % bytes.len();
            bytes[at] = *to;
        }
        Damage::Insert {
            at,
            bytes: inserted,
        } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, inserted.iter().copied());
        }
        Damage::Version(version) => bytes[0] = *version,
    }
    bytes
}

/// Every decoder on `bytes`: each must return, whatever it returns.
fn decode_everything(bytes: &[u8]) {
    let _ = format::decode_round(bytes, &format::NoPlans);
    let _ = format::decode_round(bytes, &fixture_plans());
    let _ = format::decode_plan(bytes);
    let _ = format::decode_snapshot(bytes);
    let _ = format::decode_participant(bytes);
    let _ = format::decode_workflow(bytes);
}

#[test]
fn the_seeds_are_records_that_decode() {
    let plans = fixture_plans();
    for record in fixture_values("events") {
        format::decode_round(&record, &plans).expect("a round of the checked-in log");
    }
    for record in fixture_values("participants") {
        format::decode_participant(&record).expect("a participant of the checked-in log");
    }
    for record in fixture_values("workflows") {
        format::decode_workflow(&record).expect("a workflow of the checked-in log");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn a_damaged_record_decodes_or_is_refused(
        tree in prop_oneof![Just("events"), Just("plans"), Just("sagas"), Just("participants"), Just("workflows")],
        pick in any::<prop::sample::Index>(),
        damage in damage(),
    ) {
        let records = fixture_values(tree);
        prop_assume!(!records.is_empty());
        let record = pick.get(&records);
        decode_everything(&damaged(record, &damage));
    }
}
