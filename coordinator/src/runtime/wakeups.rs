//! When parked sagas are due. A saga with nothing in flight and nothing to do for a while (a
//! long retry backoff, a stuck saga waiting for an operator) gives up its task and waits here
//! instead: an entry of a few bytes rather than a task of kilobytes, so 100,000 waiting
//! sagas fit in little memory. One runtime task wakes them when due.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::active::SagaKey;
use crate::engine::Millis;

#[derive(Default)]
pub(super) struct Wakeups {
    due: Mutex<BTreeSet<(Millis, SagaKey)>>,
    /// An entry earlier than every other arrived: the waker must sleep less.
    earlier: Notify,
}

impl Wakeups {
    pub(super) fn add(&self, at: Millis, saga: SagaKey) {
        let mut due = self.due.lock().expect("wakeups poisoned");
        let first = due.first().map(|(t, _)| *t);
        due.insert((at, saga));
        if first.is_none_or(|first| at < first) {
            self.earlier.notify_one();
        }
    }

    /// Removes and returns the sagas due by `now`, and when the next one is due.
    pub(super) fn take_due(&self, now: Millis) -> (Vec<SagaKey>, Option<Millis>) {
        let mut due = self.due.lock().expect("wakeups poisoned");
        let mut ready = Vec::new();
        while let Some((at, _)) = due.first() {
            if *at > now {
                break;
            }
            let (_, id) = due.pop_first().expect("first exists");
            ready.push(id);
        }
        (ready, due.first().map(|(at, _)| *at))
    }

    /// Resolves when an entry earlier than all others is added.
    pub(super) async fn earlier_added(&self) {
        self.earlier.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_sagas_come_out_in_time_order_and_the_rest_stay() {
        let wakeups = Wakeups::default();
        wakeups.add(300, 3);
        wakeups.add(100, 1);
        wakeups.add(200, 2);
        assert_eq!(wakeups.take_due(50), (vec![], Some(100)));
        assert_eq!(wakeups.take_due(200), (vec![1, 2], Some(300)));
        assert_eq!(wakeups.take_due(1_000), (vec![3], None));
    }

    #[tokio::test]
    async fn an_earlier_entry_wakes_the_waker() {
        let wakeups = Wakeups::default();
        wakeups.add(500, 5);
        // The permit from the first add is still there; consume it.
        wakeups.earlier_added().await;
        wakeups.add(100, 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), wakeups.earlier_added())
            .await
            .expect("an earlier entry notifies");
    }
}
