//! The store: what a reader serves, as ready-to-send bytes in a papaya map.
//!
//! Executors only read ([`Store::get`] under a [`Guard`]): a lock-free lookup
//! that writes nothing shared. The sync thread is the only writer, through the
//! one [`StoreWriter`] created with the store, so "read, compare versions,
//! insert" needs no compare-and-swap: nobody else can change the entry in
//! between.
//!
//! Each [`Entry`] keeps its HTTP header fragment and its body in one buffer,
//! so a hit costs the reader one lookup and one copy:
//!
//! ```text
//! ETag: "<32 hex>"\r\nContent-Length: <n>\r\n<body>
//! ```
//!
//! # Bounded stores
//!
//! [`Store::new`] holds every post. [`Store::bounded`] keeps the accounted
//! bytes ([`Store::bytes`]: data, key and a fixed per-entry overhead) under a
//! budget, as a near cache in front of Redis:
//!
//! - **Policy: CLOCK** (second chance). Each entry has a reference bit; a hit
//!   sets it with one relaxed load and, only when it was clear, one relaxed
//!   store to the entry itself: no lock, no allocation, no counter shared by
//!   all cores, and a hot entry's cache line is written once per sweep of the
//!   hand, not once per hit. The writer keeps a ring of resident keys; when
//!   over budget, its hand clears set bits and evicts the first entry whose
//!   bit is clear. CLOCK approximates LRU (entries read since the hand last
//!   passed survive), which keeps the hot set of a skewed (Zipf) load, costs
//!   the request path next to nothing, and needs no per-hit ordering work
//!   that an exact LRU list would (a lock or a queue per hit). Sampled LRU
//!   would need a timestamp write per hit; TinyLFU admission a shared
//!   frequency sketch updated per hit. Eviction runs on the writer (the sync
//!   thread), right after each insert, so the store exceeds the budget by at
//!   most the one entry being inserted.
//! - **Admission**: changes to ids that are not resident are not admitted
//!   ([`Applied::Skipped`]) so updates to cold ids do not push hot entries
//!   out; deletes always apply; fills (ids a reader asked for) are admitted
//!   with [`StoreWriter::admit`]; a bootstrap loads until the budget is full.
//! - The ring costs a second copy of each key and one slot: a bounded store
//!   counts them in its bytes ([`RING_SLOT_OVERHEAD`]).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::record::{etag_hex, RecordRef};

/// A pinned epoch guard; entries borrowed under it stay valid until it drops.
pub type Guard<'a> = papaya::LocalGuard<'a>;

/// Bytes counted per entry beyond its key and data: the map slot, the entry
/// node and allocator headers (measured with 1M entries, see the benchmarks).
pub const ENTRY_OVERHEAD: u64 = 96;

/// Bytes counted per entry of a bounded store for its slot in the eviction
/// ring (beyond the ring's copy of the key).
pub const RING_SLOT_OVERHEAD: u64 = 16;

/// Slot number of an entry that is in no ring (unbounded stores).
const NO_SLOT: u32 = u32::MAX;

/// Length of `ETag: "<32 hex>"\r\n`.
const ETAG_LINE: usize = 6 + 34 + 2;

/// One stored post, immutable once published to the map.
#[derive(Debug)]
pub struct Entry {
    version: u64,
    written_at_ns: u64,
    /// Resync generation that last saw this id in Redis; lets a full resync
    /// remove ids Redis no longer has. Written only by the sync thread, never
    /// read on the request path.
    generation: AtomicU32,
    /// Length of the header fragment at the start of `data`.
    head_len: u32,
    /// Position of the key in the writer's eviction ring (bounded stores).
    slot: u32,
    /// CLOCK reference bit: set by a hit on a bounded store, cleared by the hand.
    referenced: AtomicBool,
    /// Header fragment followed by the body, in one allocation.
    data: Bytes,
}

impl Entry {
    /// An entry built from a record outside any store (a read-through fill
    /// answers its waiters with one before the writer admits it).
    pub fn from_record(rec: &RecordRef<'_>) -> Self {
        Entry::new(rec, 0)
    }

    /// A copy sharing the same bytes, for inserting a fill's entry.
    fn duplicate(&self, generation: u32) -> Self {
        Entry {
            version: self.version,
            written_at_ns: self.written_at_ns,
            generation: AtomicU32::new(generation),
            head_len: self.head_len,
            slot: NO_SLOT,
            referenced: AtomicBool::new(false),
            data: self.data.clone(),
        }
    }

    /// Marks the entry as recently read (CLOCK). Costs a relaxed load, and a
    /// relaxed store only when the bit was clear.
    #[inline]
    pub fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    fn new(rec: &RecordRef<'_>, generation: u32) -> Self {
        let mut len_buf = [0u8; 20];
        let len_digits = itoa(rec.body.len() as u64, &mut len_buf);
        let head_len = ETAG_LINE + 16 + len_digits.len() + 2;
        let mut data = BytesMut::with_capacity(head_len + rec.body.len());
        data.put_slice(b"ETag: \"");
        data.put_slice(&etag_hex(&rec.etag));
        data.put_slice(b"\"\r\nContent-Length: ");
        data.put_slice(len_digits);
        data.put_slice(b"\r\n");
        debug_assert_eq!(data.len(), head_len);
        data.put_slice(rec.body);
        Entry {
            version: rec.version,
            written_at_ns: rec.written_at_ns,
            generation: AtomicU32::new(generation),
            head_len: head_len as u32,
            slot: NO_SLOT,
            // A new entry gets no second chance until it is read again: a
            // one-off read (the fill that brought it) does not make it hot.
            referenced: AtomicBool::new(false),
            data: data.freeze(),
        }
    }

    /// The version of the change that produced this entry.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the writer built this version (unix ns).
    pub fn written_at_ns(&self) -> u64 {
        self.written_at_ns
    }

    /// The quoted etag, `"<32 hex>"`, as it goes in an `ETag` header.
    pub fn etag(&self) -> &[u8] {
        &self.data[6..40]
    }

    /// `ETag: "<32 hex>"\r\n`: the one entity header of a 304.
    pub fn etag_line(&self) -> &[u8] {
        &self.data[..ETAG_LINE]
    }

    /// `ETag` and `Content-Length` header lines, each ending in CRLF.
    pub fn headers(&self) -> &[u8] {
        &self.data[..self.head_len as usize]
    }

    /// The body exactly as the writer serialized it.
    pub fn body(&self) -> &[u8] {
        &self.data[self.head_len as usize..]
    }

    /// The body as a shared buffer (no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.data.slice(self.head_len as usize..)
    }

    /// Header fragment and body together.
    pub fn headers_and_body(&self) -> &[u8] {
        &self.data
    }
}

/// Which puts of ids that are not resident a bounded store takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Only ids already resident (live changes: near-cache semantics).
    Resident,
    /// Any id (fills).
    Always,
    /// Any id while the budget has room (bootstrap and resync scans).
    UnderBudget,
}

/// Decimal digits of `n` without the formatting machinery or an allocation.
fn itoa(mut n: u64, tmp: &mut [u8; 20]) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &tmp[i..]
}

/// The map every executor reads.
#[derive(Debug)]
pub struct Store {
    map: papaya::HashMap<Box<str>, Entry>,
    /// Accounted bytes (data + key + [`ENTRY_OVERHEAD`] per entry, plus the
    /// ring's key copy and [`RING_SLOT_OVERHEAD`] when bounded); only the
    /// writer changes it.
    bytes: AtomicU64,
    /// The byte budget; `None` holds everything.
    budget: Option<u64>,
    /// Entries the writer evicted to stay under the budget.
    evictions: AtomicU64,
}

/// What applying a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The id was new, or removed and now back.
    Inserted,
    /// An older version was replaced.
    Replaced,
    /// An existing entry was removed.
    Removed,
    /// The store already held this version or a newer one: nothing changed.
    Stale,
    /// A bounded store does not hold the id and did not admit it.
    Skipped,
}

impl Store {
    /// A new empty store that holds every post, and its only writer.
    pub fn new() -> (Arc<Store>, StoreWriter) {
        Store::with_budget(None)
    }

    /// A new empty store that keeps its accounted bytes under `budget`
    /// (see the module docs), and its only writer.
    pub fn bounded(budget: u64) -> (Arc<Store>, StoreWriter) {
        Store::with_budget(Some(budget))
    }

    /// [`Store::new`] for `None`, [`Store::bounded`] otherwise.
    pub fn with_budget(budget: Option<u64>) -> (Arc<Store>, StoreWriter) {
        let store = Arc::new(Store {
            map: papaya::HashMap::new(),
            bytes: AtomicU64::new(0),
            budget,
            evictions: AtomicU64::new(0),
        });
        let writer = StoreWriter {
            store: Arc::clone(&store),
            generation: 0,
            ring: Vec::new(),
            free: Vec::new(),
            hand: 0,
        };
        (store, writer)
    }

    /// The byte budget, `None` when the store holds everything.
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// Entries evicted to stay under the budget.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Pins the current thread; hold the guard while using borrowed entries.
    pub fn guard(&self) -> Guard<'_> {
        self.map.guard()
    }

    /// The entry for `id`, if present. Lock-free; allocates nothing. On a
    /// bounded store a hit also sets the entry's reference bit.
    #[inline]
    pub fn get<'g>(&self, id: &str, guard: &'g Guard<'_>) -> Option<&'g Entry> {
        let e = self.map.get(id, guard);
        if self.budget.is_some() {
            if let Some(e) = e {
                e.touch();
            }
        }
        e
    }

    /// True when `id` is resident; does not count as a read.
    pub fn contains(&self, id: &str) -> bool {
        self.map.contains_key(id, &self.map.guard())
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Accounted bytes: data, keys and per-entry overhead.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Every `(id, version, quoted etag)`; for tests and audits, not the request path.
    pub fn snapshot(&self) -> Vec<(String, u64, String)> {
        let guard = self.map.guard();
        let mut out: Vec<_> = self
            .map
            .iter(&guard)
            .map(|(k, e)| {
                (
                    k.to_string(),
                    e.version,
                    String::from_utf8_lossy(e.etag()).into_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// The store's single writer, owned by the sync thread.
#[derive(Debug)]
pub struct StoreWriter {
    store: Arc<Store>,
    generation: u32,
    /// Bounded stores: the CLOCK ring of resident keys (`None`: a free slot).
    ring: Vec<Option<Box<str>>>,
    /// Free slots of the ring.
    free: Vec<u32>,
    /// The CLOCK hand: the next slot to look at.
    hand: usize,
}

impl StoreWriter {
    /// The store this writer changes.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn bounded(&self) -> bool {
        self.store.budget.is_some()
    }

    /// Accounted bytes of `e` stored under `key`.
    fn cost(&self, e: &Entry, key: &str) -> u64 {
        let ring = if self.bounded() {
            key.len() as u64 + RING_SLOT_OVERHEAD
        } else {
            0
        };
        e.data.len() as u64 + key.len() as u64 + ENTRY_OVERHEAD + ring
    }

    /// Applies a put if it is newer than what the store holds. A bounded
    /// store applies it only to a resident id ([`Applied::Skipped`] otherwise).
    pub fn put(&mut self, rec: &RecordRef<'_>) -> Applied {
        self.put_inner(rec, false, Admit::Resident)
    }

    /// Applies a put whether or not the id is resident (a fill, which a
    /// reader asked for), evicting others if that goes over the budget.
    pub fn admit(&mut self, rec: &RecordRef<'_>) -> Applied {
        self.put_inner(rec, false, Admit::Always)
    }

    /// [`Self::admit`] for an entry already built from a record.
    pub fn admit_entry(&mut self, id: &str, entry: &Entry) -> Applied {
        let store = Arc::clone(&self.store);
        let map = &store.map;
        let guard = map.guard();
        let old = map.get(id, &guard);
        if old.is_some_and(|e| e.version >= entry.version) {
            return Applied::Stale;
        }
        let new = entry.duplicate(self.generation);
        self.install(id, new, old)
    }

    /// Puts `entry` in place of `old` (or as a new id): an update keeps the
    /// ring slot and the reference bit of the entry it replaces, a new id
    /// takes a slot; accounts the bytes, then evicts while over budget.
    fn install(&mut self, id: &str, mut entry: Entry, old: Option<&Entry>) -> Applied {
        entry.slot = match old {
            Some(e) => {
                entry
                    .referenced
                    .store(e.referenced.load(Ordering::Relaxed), Ordering::Relaxed);
                e.slot
            }
            None => self.take_slot(id),
        };
        let new_size = self.cost(&entry, id);
        let old_size = old.map(|e| self.cost(e, id)).unwrap_or(0);
        let store = Arc::clone(&self.store);
        store.map.insert(id.into(), entry, &store.map.guard());
        store.bytes.fetch_add(new_size, Ordering::Relaxed);
        store.bytes.fetch_sub(old_size, Ordering::Relaxed);
        self.evict_over_budget();
        if old.is_some() {
            Applied::Replaced
        } else {
            Applied::Inserted
        }
    }

    /// Applies a delete of `id` at `version` if the held entry is older.
    pub fn delete(&mut self, id: &str, version: u64) -> Applied {
        let store = Arc::clone(&self.store);
        let map = &store.map;
        let guard = map.guard();
        match map.get(id, &guard) {
            Some(e) if e.version < version => {
                let size = self.cost(e, id);
                let slot = e.slot;
                map.remove(id, &guard);
                self.free_slot(slot);
                store.bytes.fetch_sub(size, Ordering::Relaxed);
                Applied::Removed
            }
            _ => Applied::Stale,
        }
    }

    /// A ring slot for a newly resident `id` (bounded stores).
    fn take_slot(&mut self, id: &str) -> u32 {
        if !self.bounded() {
            return NO_SLOT;
        }
        let key = Some(Box::<str>::from(id));
        match self.free.pop() {
            Some(slot) => {
                self.ring[slot as usize] = key;
                slot
            }
            None => {
                self.ring.push(key);
                (self.ring.len() - 1) as u32
            }
        }
    }

    fn free_slot(&mut self, slot: u32) {
        if slot != NO_SLOT {
            if let Some(s) = self.ring.get_mut(slot as usize) {
                *s = None;
                self.free.push(slot);
            }
        }
    }

    /// CLOCK: while over budget, move the hand around the ring, giving each
    /// referenced entry a second chance and evicting the first that has none.
    fn evict_over_budget(&mut self) {
        let Some(budget) = self.store.budget else {
            return;
        };
        let store = Arc::clone(&self.store);
        let map = &store.map;
        let guard = map.guard();
        // Two turns clear every bit and then find a victim; a third means
        // the ring and the map disagree, which must not loop forever.
        let mut steps = 3 * self.ring.len() + 1;
        while store.bytes.load(Ordering::Relaxed) > budget && steps > 0 && !self.ring.is_empty() {
            steps -= 1;
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            let slot = self.hand;
            self.hand += 1;
            let Some(key) = self.ring[slot].as_deref() else {
                continue;
            };
            match map.get(key, &guard) {
                Some(e) if e.referenced.load(Ordering::Relaxed) => {
                    e.referenced.store(false, Ordering::Relaxed);
                }
                Some(e) => {
                    let size = self.cost(e, key);
                    map.remove(key, &guard);
                    store.bytes.fetch_sub(size, Ordering::Relaxed);
                    store.evictions.fetch_add(1, Ordering::Relaxed);
                    self.free_slot(slot as u32);
                }
                None => self.free_slot(slot as u32),
            }
        }
    }

    /// Makes room for `additional` more ids up front (a bootstrap knows the
    /// hash length), so the map does not grow step by step while loading.
    pub fn reserve(&mut self, additional: usize) {
        let map = &self.store.map;
        map.reserve(additional, &map.guard());
    }

    /// Starts a full resync: entries not seen again before [`Self::sweep`] are removed.
    pub fn begin_resync(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Applies a put read by a resync scan and marks the id as seen.
    ///
    /// With `force` (Redis lost its data and versions restarted), the scanned
    /// record replaces the entry whatever its version.
    ///
    /// A bounded store takes ids that are not resident only while it is
    /// under its budget.
    pub fn resync_put(&mut self, rec: &RecordRef<'_>, force: bool) -> Applied {
        self.put_inner(rec, force, Admit::UnderBudget)
    }

    /// Removes every entry the current resync did not see; returns how many.
    pub fn sweep(&mut self) -> usize {
        let store = Arc::clone(&self.store);
        let map = &store.map;
        let guard = map.guard();
        let gen = self.generation;
        let stale: Vec<Box<str>> = map
            .iter(&guard)
            .filter(|(_, e)| e.generation.load(Ordering::Relaxed) != gen)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            if let Some(e) = map.remove(k.as_ref(), &guard) {
                let (size, slot) = (self.cost(e, k), e.slot);
                self.free_slot(slot);
                store.bytes.fetch_sub(size, Ordering::Relaxed);
            }
        }
        stale.len()
    }

    fn put_inner(&mut self, rec: &RecordRef<'_>, force: bool, admit: Admit) -> Applied {
        let store = Arc::clone(&self.store);
        let map = &store.map;
        let guard = map.guard();
        let old = map.get(rec.id, &guard);
        if old.is_none() {
            if let Some(budget) = self.store.budget {
                let admitted = match admit {
                    Admit::Always => true,
                    Admit::Resident => false,
                    Admit::UnderBudget => {
                        let size = rec.body.len() as u64
                            + 64
                            + 2 * rec.id.len() as u64
                            + ENTRY_OVERHEAD
                            + RING_SLOT_OVERHEAD;
                        self.store.bytes.load(Ordering::Relaxed) + size <= budget
                    }
                };
                if !admitted {
                    return Applied::Skipped;
                }
            }
        }
        if let Some(e) = old {
            if e.version == rec.version && !force {
                e.generation.store(self.generation, Ordering::Relaxed);
                return Applied::Stale;
            }
            if e.version > rec.version && !force {
                // Seen in Redis too (a newer version already arrived).
                e.generation.store(self.generation, Ordering::Relaxed);
                return Applied::Stale;
            }
        }
        let entry = Entry::new(rec, self.generation);
        self.install(rec.id, entry, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{etag_of, Op};

    fn rec<'a>(id: &'a str, version: u64, body: &'a [u8]) -> RecordRef<'a> {
        RecordRef {
            op: Op::Put,
            version,
            written_at_ns: 1,
            etag: etag_of(body),
            id,
            body,
        }
    }

    #[test]
    fn entry_holds_ready_headers_and_body() {
        let (store, mut w) = Store::new();
        assert_eq!(w.put(&rec("a", 1, b"{}")), Applied::Inserted);
        let g = store.guard();
        let e = store.get("a", &g).unwrap();
        assert_eq!(e.body(), b"{}");
        assert_eq!(e.etag(), b"\"99914b932bd37a50b983c5e7c90ae93b\"");
        assert_eq!(
            e.headers(),
            b"ETag: \"99914b932bd37a50b983c5e7c90ae93b\"\r\nContent-Length: 2\r\n"
        );
        assert_eq!(
            e.etag_line(),
            b"ETag: \"99914b932bd37a50b983c5e7c90ae93b\"\r\n"
        );
        assert_eq!(&e.body_bytes()[..], b"{}");
    }

    #[test]
    fn higher_version_wins_lower_never_does() {
        let (store, mut w) = Store::new();
        w.put(&rec("a", 5, b"five"));
        assert_eq!(w.put(&rec("a", 4, b"four")), Applied::Stale);
        assert_eq!(w.put(&rec("a", 5, b"other")), Applied::Stale);
        assert_eq!(w.delete("a", 3), Applied::Stale);
        let g = store.guard();
        assert_eq!(store.get("a", &g).unwrap().body(), b"five");
        assert_eq!(w.put(&rec("a", 6, b"six")), Applied::Replaced);
        assert_eq!(store.get("a", &g).unwrap().body(), b"six");
        assert_eq!(w.delete("a", 7), Applied::Removed);
        assert!(store.get("a", &g).is_none());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn bytes_track_inserts_replacements_and_removals() {
        let (store, mut w) = Store::new();
        w.put(&rec("ab", 1, b"1234"));
        let one = store.bytes();
        assert!(one > 4 + 2);
        w.put(&rec("cd", 2, b"1234"));
        assert_eq!(store.bytes(), 2 * one);
        w.put(&rec("cd", 3, b"12345"));
        assert_eq!(store.bytes(), 2 * one + 1);
        w.delete("ab", 4);
        w.delete("cd", 5);
        assert_eq!(store.bytes(), 0);
        assert!(store.is_empty());
    }

    #[test]
    fn sweep_removes_ids_a_resync_did_not_see() {
        let (store, mut w) = Store::new();
        w.put(&rec("keep", 1, b"k"));
        w.put(&rec("ghost", 2, b"g"));
        w.begin_resync();
        assert_eq!(w.resync_put(&rec("keep", 1, b"k"), false), Applied::Stale);
        assert_eq!(w.sweep(), 1);
        let g = store.guard();
        assert!(store.get("keep", &g).is_some());
        assert!(store.get("ghost", &g).is_none());
    }

    #[test]
    fn forced_resync_replaces_newer_versions_of_a_lost_dataset() {
        let (store, mut w) = Store::new();
        w.put(&rec("a", 900, b"old"));
        w.begin_resync();
        assert_eq!(w.resync_put(&rec("a", 3, b"new"), true), Applied::Replaced);
        w.sweep();
        let g = store.guard();
        let e = store.get("a", &g).unwrap();
        assert_eq!((e.version(), e.body()), (3, &b"new"[..]));
    }

    fn body(n: usize) -> Vec<u8> {
        vec![b'x'; n]
    }

    #[test]
    fn a_bounded_store_stays_under_its_budget_and_keeps_what_is_read() {
        // Each entry costs about 1 KiB; the budget holds 10 of them.
        let (store, mut w) = Store::bounded(10 * 1_300);
        let b = body(1_000);
        for i in 0..10 {
            w.admit(&rec(&format!("hot{i}"), i + 1, &b));
        }
        assert_eq!(store.len(), 10);
        for i in 10..200u64 {
            // Reading the hot ids between fills sets their reference bits.
            let g = store.guard();
            for h in 0..5 {
                assert!(
                    store.get(&format!("hot{h}"), &g).is_some(),
                    "hot{h} evicted at {i}"
                );
            }
            drop(g);
            w.admit(&rec(&format!("cold{i}"), i + 1, &b));
            assert!(store.bytes() <= 10 * 1_300, "{} bytes", store.bytes());
        }
        assert!(store.evictions() >= 185, "{}", store.evictions());
        let g = store.guard();
        for h in 0..5 {
            assert!(store.get(&format!("hot{h}"), &g).is_some());
        }
    }

    #[test]
    fn a_bounded_store_does_not_admit_changes_to_ids_it_does_not_hold() {
        let (store, mut w) = Store::bounded(1 << 20);
        assert_eq!(w.put(&rec("cold", 1, b"c")), Applied::Skipped);
        assert!(!store.contains("cold"));
        w.admit(&rec("warm", 2, b"w"));
        assert_eq!(w.put(&rec("warm", 3, b"w3")), Applied::Replaced);
        assert_eq!(w.delete("warm", 4), Applied::Removed);
        assert_eq!(store.bytes(), 0);
        // A resync takes new ids while the budget has room, then no more.
        let (store, mut w) = Store::bounded(3 * 1_300);
        let b = body(1_000);
        w.begin_resync();
        let taken = (0..10u64)
            .filter(|i| w.resync_put(&rec(&format!("s{i}"), i + 1, &b), false) != Applied::Skipped)
            .count();
        assert_eq!(taken, store.len());
        assert!((2..=3).contains(&taken), "{taken}");
        assert_eq!(w.sweep(), 0);
        assert!(store.bytes() <= 3 * 1_300);
    }

    #[test]
    fn ring_slots_are_reused_and_accounting_returns_to_zero() {
        let (store, mut w) = Store::bounded(1 << 20);
        for round in 0..3u64 {
            for i in 0..100u64 {
                w.admit(&rec(&format!("k{i}"), round * 1_000 + 2 * i + 1, b"v"));
            }
            for i in 0..100u64 {
                assert_eq!(
                    w.delete(&format!("k{i}"), round * 1_000 + 2 * i + 2),
                    Applied::Removed
                );
            }
            assert_eq!(store.bytes(), 0);
            assert!(w.ring.len() <= 100, "ring grew to {}", w.ring.len());
        }
        // An unbounded store keeps no ring and counts no ring bytes.
        let (store, mut w) = Store::new();
        w.put(&rec("a", 1, b"v"));
        assert!(w.ring.is_empty());
        assert_eq!(
            store.bytes(),
            (ETAG_LINE + 16 + 1 + 2 + 1 + 1) as u64 + ENTRY_OVERHEAD
        );
    }
}
