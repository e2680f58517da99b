//! The map of active sagas: every saga not yet settled in this process, found by the bits of
//! its id, each with its [`SagaSlot`] (published state, operator requests, parked position).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::slot::SagaSlot;

/// Active sagas are found by the 128 bits of their id (a UUID the runtime made), not by
/// another copy of the string: with 100,000 sagas in flight every byte per saga counts.
pub(crate) type SagaKey = u128;

/// The key of a saga id in its canonical form (lowercase, hyphenated); `None` for anything
/// else, which names no saga this runtime made.
pub(super) fn saga_key(id: &str) -> Option<SagaKey> {
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (uuid.hyphenated().encode_lower(&mut canonical) == id).then_some(uuid.as_u128())
}

/// The active sagas of one runtime.
#[derive(Default)]
pub(super) struct ActiveSagas {
    slots: Mutex<HashMap<SagaKey, Arc<SagaSlot>>>,
}

impl ActiveSagas {
    /// The slot of the active saga `id`.
    pub(super) fn get(&self, id: &str) -> Option<Arc<SagaSlot>> {
        self.get_key(saga_key(id)?)
    }

    pub(super) fn get_key(&self, key: SagaKey) -> Option<Arc<SagaSlot>> {
        self.slots
            .lock()
            .expect("active map poisoned")
            .get(&key)
            .cloned()
    }

    /// Adds `slot` unless the saga is active already; whether it was added.
    pub(super) fn insert(&self, key: SagaKey, slot: Arc<SagaSlot>) -> bool {
        let mut slots = self.slots.lock().expect("active map poisoned");
        if slots.contains_key(&key) {
            return false;
        }
        slots.insert(key, slot);
        true
    }

    /// Removes `slot`, unless the saga has another slot by now (its task stopped after the
    /// saga was taken back by a new incarnation of this instance).
    pub(super) fn remove(&self, key: SagaKey, slot: &Arc<SagaSlot>) {
        let mut slots = self.slots.lock().expect("active map poisoned");
        if slots
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
        {
            slots.remove(&key);
        }
    }

    /// Removes and returns every slot.
    pub(super) fn take_all(&self) -> Vec<Arc<SagaSlot>> {
        std::mem::take(&mut *self.slots.lock().expect("active map poisoned"))
            .into_values()
            .collect()
    }

    /// Every slot, for a sweep (shutdown).
    pub(super) fn all(&self) -> Vec<Arc<SagaSlot>> {
        self.slots
            .lock()
            .expect("active map poisoned")
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::saga_key;

    #[test]
    fn only_canonical_uuid_ids_have_a_key() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(
            saga_key(&id),
            Some(uuid::Uuid::parse_str(&id).unwrap().as_u128())
        );
        assert_eq!(saga_key(&id.to_uppercase()), None);
        assert_eq!(saga_key(&format!("{{{id}}}")), None);
        assert_eq!(saga_key(&id.replace('-', "")), None);
        assert_eq!(saga_key("s1"), None);
    }
}
