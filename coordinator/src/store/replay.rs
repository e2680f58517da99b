//! Rebuilding a saga from its stored records, the same way for every store.

use std::sync::Arc;

use super::StoreError;
use super::format::{self, PlanSource};
use crate::engine::{EngineError, Event, Plan, Saga};

/// A stored snapshot with the saga's first round, which holds the plan the snapshot leaves out.
pub(super) struct SnapshotRecords<'a> {
    pub snapshot: &'a [u8],
    pub first_round: &'a [u8],
}

/// The saga rebuilt from its snapshot (if it has one) and the rounds after it, with the sequence
/// number of its last event; `None` when there is neither. `rounds` yields each round's first
/// sequence number and record, in order: every round from 0 when there is no snapshot, else
/// those after it (rounds are appended before a snapshot is taken, so none straddles it).
pub(super) fn rebuild<R: AsRef<[u8]>>(
    saga_id: &str,
    plans: &dyn PlanSource,
    snapshot: Option<SnapshotRecords<'_>>,
    rounds: impl IntoIterator<Item = Result<(u64, R), StoreError>>,
) -> Result<Option<(Saga, u64)>, StoreError> {
    let unreplayable = |e: EngineError| StoreError::Corrupt {
        tree: "events",
        message: format!("saga {saga_id}: {e}"),
    };
    let (mut saga, mut last) = match snapshot {
        Some(records) => {
            let (mut saga, seq) =
                format::decode_snapshot(records.snapshot).map_err(corrupt("sagas"))?;
            saga.plan = plan_of(saga_id, records.first_round, plans)?;
            (Some(saga), seq)
        }
        None => (None, 0),
    };
    for round in rounds {
        let (first, record) = round?;
        let events = format::decode_round(record.as_ref(), plans).map_err(corrupt("events"))?;
        for (seq, event) in (first..).zip(events) {
            match (&mut saga, &event) {
                (Some(saga), _) => saga.apply(&event).map_err(unreplayable)?,
                (None, Event::Created(created)) => {
                    saga = Some(Saga::create(created).map_err(unreplayable)?);
                }
                (None, other) => {
                    return Err(StoreError::Corrupt {
                        tree: "events",
                        message: format!(
                            "saga {saga_id} starts with {} instead of created",
                            other.name()
                        ),
                    });
                }
            }
            last = seq;
        }
    }
    Ok(saga.map(|saga| (saga, last)))
}

/// Every event of a saga from its rounds (each with its first sequence number), in order.
pub(super) fn expand<R: AsRef<[u8]>>(
    plans: &dyn PlanSource,
    rounds: impl IntoIterator<Item = Result<(u64, R), StoreError>>,
) -> Result<Vec<(u64, Event)>, StoreError> {
    let mut events = Vec::new();
    for round in rounds {
        let (first, record) = round?;
        let decoded = format::decode_round(record.as_ref(), plans).map_err(corrupt("events"))?;
        events.extend((first..).zip(decoded));
    }
    Ok(events)
}

/// The plan in a saga's first round.
pub(super) fn plan_of(
    saga_id: &str,
    first_round: &[u8],
    plans: &dyn PlanSource,
) -> Result<Arc<Plan>, StoreError> {
    let round = format::decode_round(first_round, plans).map_err(corrupt("events"))?;
    match round.into_iter().next() {
        Some(Event::Created(created)) => Ok(created.plan),
        _ => Err(StoreError::Corrupt {
            tree: "events",
            message: format!("saga {saga_id} does not start with created"),
        }),
    }
}

/// A record that does not decode, as the error of the table or tree it was read from.
pub(super) fn corrupt(tree: &'static str) -> impl Fn(format::FormatError) -> StoreError {
    move |e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    }
}
