//! Every write the test made, and what the writer answered.
//!
//! Each id is written by one thread at a time, so an id's events are in the
//! order Redis saw them. From them the ledger says which states Redis may
//! hold for the id: the last acknowledged write, or one of the writes after
//! it whose outcome is unknown (an error or a lost connection: applied or
//! not). When Redis lost its data, writes acknowledged before the loss are
//! gone, and a write in flight across it may have landed on either side.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

/// What an id holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// No post.
    Absent,
    /// The post written with this sequence number.
    Present(u64),
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Absent => write!(f, "absent"),
            State::Present(seq) => write!(f, "seq {seq}"),
        }
    }
}

/// What the writer said about a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 201 for a put, 200 or 404 for a delete: Redis applied it (or the id
    /// was already gone).
    Acked,
    /// No clear answer: it may or may not have been applied.
    Unknown,
}

/// One write.
#[derive(Debug, Clone)]
pub struct Event {
    /// The state the write asks for.
    pub state: State,
    /// What the writer answered.
    pub outcome: Outcome,
    /// When the request was sent.
    pub sent: Instant,
    /// When the answer (or the error) came.
    pub done: Instant,
    /// The ETag of a 201, quoted.
    pub etag: Option<String>,
    /// The version of a 201 or of a delete's 200.
    pub version: Option<u64>,
}

/// The writes of one test.
#[derive(Debug, Default)]
pub struct Ledger {
    events: Mutex<HashMap<String, Vec<Event>>>,
    /// Redis lost its data between these instants (killed, back up empty).
    loss: Mutex<Option<(Instant, Instant)>>,
}

/// Counts for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Writes the writer acknowledged.
    pub acked: u64,
    /// Writes with no clear answer.
    pub unknown: u64,
    /// Distinct ids written.
    pub ids: u64,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a write to `id`; call in the order the writes were made.
    pub fn record(&self, id: &str, event: Event) {
        let mut e = self.events.lock().unwrap_or_else(|e| e.into_inner());
        e.entry(id.to_owned()).or_default().push(event);
    }

    /// Redis was killed at `killed` and answered again, empty, at `up`.
    pub fn data_lost(&self, killed: Instant, up: Instant) {
        *self.loss.lock().unwrap_or_else(|e| e.into_inner()) = Some((killed, up));
    }

    /// Every id written.
    pub fn ids(&self) -> Vec<String> {
        let e = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = e.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Counts of acknowledged and unknown writes.
    pub fn totals(&self) -> Totals {
        let e = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = Totals {
            ids: e.len() as u64,
            ..Totals::default()
        };
        for ev in e.values().flatten() {
            match ev.outcome {
                Outcome::Acked => t.acked += 1,
                Outcome::Unknown => t.unknown += 1,
            }
        }
        t
    }

    /// Every acknowledged write that got a version: its id and that version.
    pub fn acked_versions(&self) -> Vec<(String, u64)> {
        let e = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, u64)> = e
            .iter()
            .flat_map(|(id, evs)| {
                evs.iter()
                    .filter(|ev| ev.outcome == Outcome::Acked)
                    .filter_map(move |ev| ev.version.map(|v| (id.clone(), v)))
            })
            .collect();
        out.sort_by_key(|(_, v)| *v);
        out
    }

    /// The highest version the writer acknowledged (after the data loss, if any).
    pub fn max_acked_version(&self) -> u64 {
        let e = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let since = self
            .loss
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|l| l.1);
        e.values()
            .flatten()
            .filter(|ev| ev.outcome == Outcome::Acked)
            .filter(|ev| since.is_none_or(|up| ev.sent >= up))
            .filter_map(|ev| ev.version)
            .max()
            .unwrap_or(0)
    }

    /// The states Redis may hold for `id`.
    pub fn allowed(&self, id: &str) -> BTreeSet<State> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let loss = *self.loss.lock().unwrap_or_else(|e| e.into_inner());
        allowed_states(events.get(id).map(Vec::as_slice).unwrap_or(&[]), loss)
    }

    /// The acknowledged ETag of `id`'s write number `seq`, if any.
    pub fn acked_etag(&self, id: &str, seq: u64) -> Option<String> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events
            .get(id)?
            .iter()
            .find(|ev| ev.state == State::Present(seq) && ev.outcome == Outcome::Acked)?
            .etag
            .clone()
    }
}

/// Replays one id's events over the set of states Redis may hold.
fn allowed_states(events: &[Event], loss: Option<(Instant, Instant)>) -> BTreeSet<State> {
    let mut s = BTreeSet::from([State::Absent]);
    let mut lost = false;
    for ev in events {
        if let (Some((killed, up)), false) = (loss, lost) {
            if ev.done >= killed {
                lost = true;
                if ev.sent >= up {
                    // Wholly after: the loss first, then this write.
                    s = BTreeSet::from([State::Absent]);
                } else {
                    // Across the loss: applied before it (then lost), after
                    // it, or not at all.
                    s = BTreeSet::from([State::Absent, ev.state]);
                    continue;
                }
            }
        }
        match ev.outcome {
            Outcome::Acked => s = BTreeSet::from([ev.state]),
            Outcome::Unknown => {
                s.insert(ev.state);
            }
        }
    }
    if loss.is_some() && !lost {
        s = BTreeSet::from([State::Absent]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(state: State, outcome: Outcome, sent: Instant, done: Instant) -> Event {
        Event {
            state,
            outcome,
            sent,
            done,
            etag: None,
            version: None,
        }
    }

    #[test]
    fn the_last_acknowledged_write_and_later_unknown_ones_are_allowed() {
        let t = Instant::now();
        let events = [
            ev(State::Present(1), Outcome::Acked, t, t),
            ev(State::Present(2), Outcome::Unknown, t, t),
            ev(State::Present(3), Outcome::Acked, t, t),
            ev(State::Absent, Outcome::Unknown, t, t),
            ev(State::Present(5), Outcome::Unknown, t, t),
        ];
        assert_eq!(
            allowed_states(&events, None),
            BTreeSet::from([State::Present(3), State::Absent, State::Present(5)])
        );
        assert_eq!(allowed_states(&[], None), BTreeSet::from([State::Absent]));
    }

    #[test]
    fn a_data_loss_forgets_what_came_before_it() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let before = ev(State::Present(1), Outcome::Acked, ms(0), ms(1));
        let across = ev(State::Present(2), Outcome::Acked, ms(5), ms(30));
        let after = ev(State::Present(3), Outcome::Acked, ms(40), ms(41));
        let loss = Some((ms(10), ms(20)));
        assert_eq!(
            allowed_states(std::slice::from_ref(&before), loss),
            BTreeSet::from([State::Absent])
        );
        assert_eq!(
            allowed_states(&[before.clone(), across.clone()], loss),
            BTreeSet::from([State::Absent, State::Present(2)])
        );
        assert_eq!(
            allowed_states(&[before, across, after], loss),
            BTreeSet::from([State::Present(3)])
        );
    }
}
