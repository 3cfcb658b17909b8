//! The store: what a reader serves, as ready-to-send bytes in a papaya map.
//!
//! Executors only read ([`Store::get`] under a [`Guard`]): a lock-free lookup
//! that writes nothing shared. The sync thread is the only writer, through the
//! one [`StoreWriter`] created with the store, so "read, compare versions,
//! insert" needs no compare-and-swap: nobody else can change the entry in
//! between.
//!
//! Each [`Entry`] keeps its id, its HTTP header fragment and its body in one
//! heap block, so a hit costs the reader one lookup and one copy:
//!
//! ```text
//! <id>ETag: "<32 hex>"\r\nContent-Length: <n>\r\n<body>
//! ```
//!
//! The map is a papaya set of entries keyed by the id inside their block, so
//! a post costs its bytes, papaya's node holding the 24-byte entry handle, a
//! table slot and the allocator's headers: see [`ENTRY_OVERHEAD`].
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use papaya::Guard as _;

use crate::record::{etag_hex, RecordRef};

pub use self::block::Entry;

/// A pinned epoch guard; entries borrowed under it stay valid until it drops.
pub type Guard<'a> = papaya::LocalGuard<'a>;

/// Bytes counted per entry beyond its id, header fragment and body: papaya's
/// map node (the 24-byte [`Entry`] handle in glibc's smallest, 32-byte,
/// chunk), the block's allocator header and size-class rounding (8 + about 8),
/// and the entry's share of the map's table (9 bytes a slot, at most about
/// half the slots used: 19 bytes an entry at a million). Measured: a reader
/// that took 1,000,000 posts of ~350-byte bodies over pub/sub grew by 496.4
/// MB of RSS for 426.1 MB of ids, header fragments and bodies, 70.3 bytes an
/// entry (the memory step of `bench/run_benchmark.sh`).
pub const ENTRY_OVERHEAD: u64 = 70;

/// Bytes counted per entry of a bounded store for its slot in the eviction
/// ring, beyond the ring's copy of the key: the ring's `Option<Box<str>>`
/// (16), the key copy's allocator header and rounding (about 16), and the
/// slot number kept at the end of the entry's block (4).
pub const RING_SLOT_OVERHEAD: u64 = 36;

/// Most ids one [`Store::prefetch`] takes.
pub const PREFETCH_MAX: usize = 16;

/// Slot number of an entry that is in no ring (unbounded stores).
const NO_SLOT: u32 = u32::MAX;

/// Length of `ETag: "<32 hex>"\r\n`.
const ETAG_LINE: usize = 6 + 34 + 2;

/// The header fragment of a body of `body_len` bytes, into `out`; returns its length.
fn header_fragment(etag: &[u8; 16], body_len: usize, out: &mut [u8; MAX_HEAD]) -> usize {
    let mut len_buf = [0u8; 20];
    let digits = itoa(body_len as u64, &mut len_buf);
    let parts: [&[u8]; 5] = [
        b"ETag: \"",
        &etag_hex(etag),
        b"\"\r\nContent-Length: ",
        digits,
        b"\r\n",
    ];
    let mut n = 0;
    for p in parts {
        out[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    debug_assert_eq!(n, head_len_for(body_len));
    n
}

/// Longest header fragment: `Content-Length` of a 20-digit number.
const MAX_HEAD: usize = ETAG_LINE + 16 + 20 + 2;

/// Length of the header fragment of a body of `body_len` bytes.
fn head_len_for(body_len: usize) -> usize {
    let mut tmp = [0u8; 20];
    ETAG_LINE + 16 + itoa(body_len as u64, &mut tmp).len() + 2
}

impl Entry {
    /// An entry built from a record outside any store (a read-through fill
    /// answers its waiters with one before the writer admits it).
    pub fn from_record(rec: &RecordRef<'_>) -> Self {
        // Fills only exist for bounded stores, whose entries carry a ring slot.
        Entry::new(rec, true)
    }

    fn new(rec: &RecordRef<'_>, with_slot: bool) -> Self {
        let mut head = [0u8; MAX_HEAD];
        let head_len = header_fragment(&rec.etag, rec.body.len(), &mut head);
        Entry::from_parts(rec.version, rec.id, &head[..head_len], rec.body, with_slot)
    }

    /// Marks the entry as recently read (CLOCK). Costs a relaxed load, and a
    /// relaxed store only when the bit was clear.
    #[inline]
    pub fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// The version of the change that produced this entry.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The quoted etag, `"<32 hex>"`, as it goes in an `ETag` header.
    #[inline]
    pub fn etag(&self) -> &[u8] {
        &self.headers()[6..40]
    }

    /// `ETag: "<32 hex>"\r\n`: the one entity header of a 304.
    #[inline]
    pub fn etag_line(&self) -> &[u8] {
        &self.headers()[..ETAG_LINE]
    }

    /// Bytes this entry accounts for beyond [`ENTRY_OVERHEAD`]: id, header
    /// fragment and body.
    fn data_len(&self) -> u64 {
        (self.id().len() + self.headers_and_body().len()) as u64
    }
}

/// The entry's memory layout, the one place in this crate with `unsafe`.
mod block {
    use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
    use std::fmt;
    use std::ptr::NonNull;
    use std::sync::atomic::AtomicBool;

    /// A cache line.
    const LINE: usize = 64;
    /// A block's bytes that [`Entry::prefetch`] asks for at most: an answer
    /// of a typical post, while a large post's copy streams its own lines.
    const PREFETCH_BYTES: usize = 1024;
    /// Set in `lens` when the block ends with a ring slot.
    const HAS_SLOT: u32 = 1 << 31;
    /// Bytes of the ring slot at the end of a bounded store's block.
    const SLOT_LEN: usize = 4;

    /// One stored post, immutable once published to the map but for its
    /// CLOCK bit (set by hits), its resync mark (set by the sync thread) and
    /// its ring slot (set by the sync thread before the entry is published).
    ///
    /// A 24-byte handle, which papaya keeps inline in its map node, over one
    /// heap block laid out as
    ///
    /// ```text
    /// [id][ETag: "<32 hex>"\r\nContent-Length: <n>\r\n][body][ring slot, u32, bounded stores only]
    /// ```
    ///
    /// so a post costs two allocations (the node and the block) and a map
    /// slot, and a hit reads the id, the headers and the start of the body
    /// from the same cache lines.
    pub struct Entry {
        /// Start of the block, which this entry owns.
        ptr: NonNull<u8>,
        /// The version of the change that produced this entry.
        pub(super) version: u64,
        /// Body length, plus [`HAS_SLOT`].
        lens: u32,
        /// Id length (1..=`MAX_ID_LEN`).
        id_len: u8,
        /// Header fragment length.
        head_len: u8,
        /// CLOCK reference bit: set by a hit on a bounded store, cleared by the hand.
        pub(super) referenced: AtomicBool,
        /// Seen in Redis by the current (or last) full resync; entries a
        /// resync leaves unmarked are removed by its sweep. Written only by
        /// the sync thread, never read on the request path.
        pub(super) seen: AtomicBool,
    }

    // The handle must stay small enough for papaya's node to fit glibc's
    // smallest chunk (24 usable bytes).
    const _: () = assert!(std::mem::size_of::<Entry>() == 24);

    // SAFETY: the block is owned by the entry (freed only by its drop), its
    // bytes are written only while the entry is built or, for the ring slot,
    // through `&mut Entry`; shared access only reads them. The other fields
    // are plain values or atomics.
    unsafe impl Send for Entry {}
    // SAFETY: as above: `&Entry` never writes the block.
    unsafe impl Sync for Entry {}

    impl Entry {
        /// Copies `id`, `head` and `body` into a new block, with room for a
        /// ring slot (set to `u32::MAX`) when `with_slot`.
        pub(super) fn from_parts(
            version: u64,
            id: &str,
            head: &[u8],
            body: &[u8],
            with_slot: bool,
        ) -> Entry {
            // Records are bounded far below these (MAX_ID_LEN, MAX_BODY_LEN);
            // a caller that built a RecordRef by hand past them is a bug.
            assert!(
                !id.is_empty() && id.len() <= usize::from(u8::MAX),
                "id length {} out of range",
                id.len()
            );
            assert!(
                head.len() <= usize::from(u8::MAX),
                "header fragment too long"
            );
            let body_len = u32::try_from(body.len())
                .ok()
                .filter(|&n| n < HAS_SLOT)
                .expect("body longer than 2 GiB");
            let slot_len = if with_slot { SLOT_LEN } else { 0 };
            let layout = block_layout(id.len() + head.len() + body.len() + slot_len);
            // SAFETY: the layout has a non-zero size (the id is not empty).
            let raw = unsafe { alloc(layout) };
            let Some(ptr) = NonNull::new(raw) else {
                handle_alloc_error(layout)
            };
            let mut at = 0;
            for part in [id.as_bytes(), head, body] {
                // SAFETY: the parts add up to at most the block's size, and a
                // fresh allocation does not overlap them.
                unsafe {
                    std::ptr::copy_nonoverlapping(part.as_ptr(), ptr.as_ptr().add(at), part.len())
                };
                at += part.len();
            }
            let mut e = Entry {
                ptr,
                version,
                lens: body_len | if with_slot { HAS_SLOT } else { 0 },
                id_len: id.len() as u8,
                head_len: head.len() as u8,
                referenced: AtomicBool::new(false),
                seen: AtomicBool::new(true),
            };
            if with_slot {
                e.set_slot(u32::MAX);
            }
            e
        }

        /// A copy of this entry in a block of its own, with or without a ring slot.
        pub(super) fn copy(&self, with_slot: bool) -> Entry {
            Entry::from_parts(
                self.version,
                self.id(),
                self.headers(),
                self.body(),
                with_slot,
            )
        }

        #[inline]
        fn body_len(&self) -> usize {
            (self.lens & !HAS_SLOT) as usize
        }

        #[inline]
        fn has_slot(&self) -> bool {
            self.lens & HAS_SLOT != 0
        }

        /// Length of the block: id, header fragment, body and ring slot.
        fn block_len(&self) -> usize {
            let slot = if self.has_slot() { SLOT_LEN } else { 0 };
            usize::from(self.id_len) + usize::from(self.head_len) + self.body_len() + slot
        }

        /// `len` bytes of the block from `at`.
        ///
        /// # Safety
        ///
        /// `at + len` must not exceed the block's id, header and body bytes.
        #[inline]
        unsafe fn bytes(&self, at: usize, len: usize) -> &[u8] {
            // SAFETY: in bounds per the caller; these bytes were initialised
            // when the block was built and are never written again.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(at), len) }
        }

        /// The post id.
        #[inline]
        pub fn id(&self) -> &str {
            // SAFETY: the first `id_len` bytes of the block.
            let bytes = unsafe { self.bytes(0, usize::from(self.id_len)) };
            // SAFETY: they were copied from a `&str` in `from_parts`.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        }

        /// Header fragment and body together.
        #[inline]
        pub fn headers_and_body(&self) -> &[u8] {
            let len = usize::from(self.head_len) + self.body_len();
            // SAFETY: the header fragment and the body follow the id.
            unsafe { self.bytes(usize::from(self.id_len), len) }
        }

        /// `ETag` and `Content-Length` header lines, each ending in CRLF.
        #[inline]
        pub fn headers(&self) -> &[u8] {
            // SAFETY: the header fragment follows the id.
            unsafe { self.bytes(usize::from(self.id_len), usize::from(self.head_len)) }
        }

        /// The body exactly as the writer serialized it.
        #[inline]
        pub fn body(&self) -> &[u8] {
            let at = usize::from(self.id_len) + usize::from(self.head_len);
            // SAFETY: the body follows the header fragment.
            unsafe { self.bytes(at, self.body_len()) }
        }

        /// Asks the CPU to start loading the block's lines that an answer
        /// reads (id, header fragment and body, up to [`PREFETCH_BYTES`]).
        #[inline]
        pub(super) fn prefetch(&self) {
            let len = self.block_len().min(PREFETCH_BYTES);
            let start = self.ptr.as_ptr() as usize;
            // Every line the block's first `len` bytes touch; a prefetch
            // reads nothing and cannot fault, so addresses alone are enough.
            let mut line = start & !(LINE - 1);
            while line < start + len {
                papaya::prefetch_read(line as *const u8);
                line += LINE;
            }
        }

        /// Position of the id in the writer's eviction ring (bounded stores);
        /// `u32::MAX` when in none.
        pub(super) fn slot(&self) -> u32 {
            if !self.has_slot() {
                return u32::MAX;
            }
            let at = self.block_len() - SLOT_LEN;
            // SAFETY: the last SLOT_LEN bytes of the block are the slot,
            // written in `from_parts` and only through `&mut self` since.
            let bytes =
                unsafe { std::ptr::read_unaligned(self.ptr.as_ptr().add(at).cast::<[u8; 4]>()) };
            u32::from_ne_bytes(bytes)
        }

        /// Sets the ring slot; a no-op for a block without one.
        pub(super) fn set_slot(&mut self, slot: u32) {
            if !self.has_slot() {
                return;
            }
            let at = self.block_len() - SLOT_LEN;
            // SAFETY: the last SLOT_LEN bytes of the block; `&mut self` means
            // nobody else can be reading them.
            unsafe {
                std::ptr::write_unaligned(
                    self.ptr.as_ptr().add(at).cast::<[u8; 4]>(),
                    slot.to_ne_bytes(),
                )
            };
        }
    }

    fn block_layout(len: usize) -> Layout {
        // Alignment 1: the block holds bytes only (the slot is read unaligned).
        match Layout::from_size_align(len, 1) {
            Ok(l) => l,
            Err(_) => panic!("entry block of {len} bytes"),
        }
    }

    impl Drop for Entry {
        fn drop(&mut self) {
            // SAFETY: allocated in `from_parts` with this layout (its size is
            // a function of the lengths, which never change), and freed only here.
            unsafe { dealloc(self.ptr.as_ptr(), block_layout(self.block_len())) }
        }
    }

    impl fmt::Debug for Entry {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Entry")
                .field("id", &self.id())
                .field("version", &self.version)
                .field("headers", &String::from_utf8_lossy(self.headers()))
                .field("body_len", &self.body_len())
                .finish_non_exhaustive()
        }
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

/// How many more ids to make room for: `additional`, or for a bounded
/// store no more than the entries its budget could hold (each accounts for
/// at least [`ENTRY_OVERHEAD`] and [`RING_SLOT_OVERHEAD`]) beyond the `len`
/// it holds.
fn reservable(budget: Option<u64>, len: usize, additional: usize) -> usize {
    match budget {
        None => additional,
        Some(b) => {
            let most =
                usize::try_from(b / (ENTRY_OVERHEAD + RING_SLOT_OVERHEAD)).unwrap_or(usize::MAX);
            additional.min(most.saturating_sub(len))
        }
    }
}

/// An entry as the map holds it: hashed and compared by its id, so the id
/// lives once, in the entry's block, instead of in a key of its own.
struct Resident(Entry);

impl std::hash::Hash for Resident {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash as the `&str` a lookup passes (see `Borrow`).
        self.0.id().hash(state);
    }
}

impl PartialEq for Resident {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for Resident {}

impl std::borrow::Borrow<str> for Resident {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The map every executor reads.
#[derive(Debug)]
pub struct Store {
    map: papaya::HashSet<Resident>,
    /// Accounted bytes (id, header fragment and body + [`ENTRY_OVERHEAD`]
    /// per entry, plus the ring's key copy and [`RING_SLOT_OVERHEAD`] when
    /// bounded); only the writer changes it.
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
            // Blocking resizes: the sync thread, the only writer, finishes a
            // resize as soon as it starts, so readers never look in two tables
            // and the old table is retired at once. (Incremental resizing
            // spreads the copy over later writes, which a store that stops
            // growing may never make: a million-entry store kept its previous
            // 9 MiB table, and every miss probed both tables.)
            map: papaya::HashSet::builder()
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            bytes: AtomicU64::new(0),
            budget,
            evictions: AtomicU64::new(0),
        });
        let writer = StoreWriter {
            store: Arc::clone(&store),
            ring: Vec::new(),
            free: Vec::new(),
            hand: 0,
            unflushed: 0,
            unmarked: 0,
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
        let e = self.map.get(id, guard).map(|r| &r.0);
        if self.budget.is_some() {
            if let Some(e) = e {
                e.touch();
            }
        }
        e
    }

    /// Starts loading what [`Store::get`] of each of `ids` will read, all
    /// of them together, so that their waits for memory overlap instead of
    /// following each other. Up to [`PREFETCH_MAX`] ids; the rest are not
    /// taken from the iterator.
    ///
    /// A lookup reads three things that each need the one before: the
    /// table's slot (its metadata byte and node pointer), papaya's node (the
    /// entry handle) and the entry's block (the id, compared, then the
    /// answer, copied). With every post of a large store equally likely, each
    /// is a cache miss, so a pipelined read of 16 requests waited for memory
    /// about 48 times in turn. Here each step is asked for every id before
    /// the next step waits for any: about three waits for all of them.
    ///
    /// Nothing here changes the store or decides an answer: an id that is
    /// absent, or whose slot's metadata matches another id's, only costs its
    /// loads, and every answer still comes from [`Store::get`].
    pub fn prefetch<'a>(&self, ids: impl IntoIterator<Item = &'a str>, guard: &Guard<'_>) {
        let mut hashes = [0u64; PREFETCH_MAX];
        let mut n = 0;
        for id in ids.into_iter().take(PREFETCH_MAX) {
            let h = self.map.hash_of(id);
            self.map.prefetch_slot(h, guard);
            hashes[n] = h;
            n += 1;
        }
        let mut found: [Option<&Resident>; PREFETCH_MAX] = [None; PREFETCH_MAX];
        for (h, f) in hashes[..n].iter().zip(&mut found) {
            *f = self.map.first_candidate(*h, guard);
            if let Some(r) = f {
                papaya::prefetch_read((*r as *const Resident).cast());
            }
        }
        for r in found[..n].iter().flatten() {
            r.0.prefetch();
        }
    }

    /// True when `id` is resident; does not count as a read.
    pub fn contains(&self, id: &str) -> bool {
        self.map.contains(id, &self.map.guard())
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
            .map(|Resident(e)| {
                (
                    e.id().to_owned(),
                    e.version,
                    String::from_utf8_lossy(e.etag()).into_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The bytes [`Store::bytes`] should hold, recomputed from every entry;
    /// for tests and audits (walks the whole map).
    pub fn recount_bytes(&self) -> u64 {
        let guard = self.map.guard();
        let bounded = self.budget.is_some();
        self.map
            .iter(&guard)
            .map(|Resident(e)| entry_cost(e, bounded))
            .sum()
    }
}

/// Accounted bytes of `e` in a bounded or unbounded store.
fn entry_cost(e: &Entry, bounded: bool) -> u64 {
    let ring = if bounded {
        e.id().len() as u64 + RING_SLOT_OVERHEAD
    } else {
        0
    };
    e.data_len() + ENTRY_OVERHEAD + ring
}

/// The store's single writer, owned by the sync thread.
#[derive(Debug)]
pub struct StoreWriter {
    store: Arc<Store>,
    /// Bounded stores: the CLOCK ring of resident keys (`None`: a free slot).
    ring: Vec<Option<Box<str>>>,
    /// Free slots of the ring.
    free: Vec<u32>,
    /// The CLOCK hand: the next slot to look at.
    hand: usize,
    /// Inserts since the writer last flushed its retired garbage.
    unflushed: u32,
    /// Entries the current resync unmarked; none means its sweep has
    /// nothing to look for.
    unmarked: usize,
}

/// Inserts between two flushes of the writer's retired garbage. papaya
/// retires a map's old table when it grows, but frees it only once the
/// thread's batch of retired objects fills, which inserts of new ids never
/// do: without a flush, a map loaded from empty keeps every table it
/// outgrew (about 18 bytes per entry at a million entries).
const FLUSH_EVERY: u32 = 4096;

impl StoreWriter {
    /// The store this writer changes.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn bounded(&self) -> bool {
        self.store.budget.is_some()
    }

    /// Accounted bytes of `e`.
    fn cost(&self, e: &Entry) -> u64 {
        entry_cost(e, self.bounded())
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

    /// [`Self::admit`] for an entry already built from a record (a copy of
    /// it goes into the store: the caller's may still be read by waiters).
    pub fn admit_entry(&mut self, id: &str, entry: &Entry) -> Applied {
        debug_assert_eq!(id, entry.id());
        let store = Arc::clone(&self.store);
        let map = &store.map;
        let guard = map.guard();
        let old = map.get(id, &guard).map(|r| &r.0);
        if old.is_some_and(|e| e.version >= entry.version) {
            return Applied::Stale;
        }
        let new = entry.copy(self.bounded());
        self.install(new, old)
    }

    /// Puts `entry` in place of `old` (or as a new id): an update keeps the
    /// ring slot and the reference bit of the entry it replaces, a new id
    /// takes a slot; accounts the bytes, then evicts while over budget.
    fn install(&mut self, mut entry: Entry, old: Option<&Entry>) -> Applied {
        let slot = match old {
            Some(e) => {
                entry
                    .referenced
                    .store(e.referenced.load(Ordering::Relaxed), Ordering::Relaxed);
                e.slot()
            }
            None => self.take_slot(entry.id()),
        };
        entry.set_slot(slot);
        let new_size = self.cost(&entry);
        let old_size = old.map(|e| self.cost(e)).unwrap_or(0);
        let store = Arc::clone(&self.store);
        let guard = store.map.guard();
        store.map.insert(Resident(entry), &guard);
        self.unflushed += 1;
        if self.unflushed >= FLUSH_EVERY {
            self.unflushed = 0;
            guard.flush();
        }
        drop(guard);
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
        match map.get(id, &guard).map(|r| &r.0) {
            Some(e) if e.version < version => {
                let size = self.cost(e);
                let slot = e.slot();
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
            match map.get(key, &guard).map(|r| &r.0) {
                Some(e) if e.referenced.load(Ordering::Relaxed) => {
                    e.referenced.store(false, Ordering::Relaxed);
                }
                Some(e) => {
                    let size = self.cost(e);
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
    /// A bounded store reserves no more than its budget can ever hold:
    /// the table is not counted in the budget and never shrinks.
    pub fn reserve(&mut self, additional: usize) {
        let n = reservable(self.store.budget, self.store.len(), additional);
        let map = &self.store.map;
        map.reserve(n, &map.guard());
    }

    /// Starts a full resync: entries not seen again before [`Self::sweep`]
    /// are removed. Unmarks every entry (one pass over the map; a resync
    /// reads them all from Redis anyway).
    pub fn begin_resync(&mut self) {
        let map = &self.store.map;
        let guard = map.guard();
        self.unmarked = 0;
        for Resident(e) in map.iter(&guard) {
            e.seen.store(false, Ordering::Relaxed);
            self.unmarked += 1;
        }
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
        if self.unmarked == 0 {
            // Every entry came in during this resync (a bootstrap into an
            // empty store): all are marked, no need to walk the map.
            return 0;
        }
        self.unmarked = 0;
        let store = Arc::clone(&self.store);
        let map = &store.map;
        let guard = map.guard();
        let stale: Vec<Box<str>> = map
            .iter(&guard)
            .filter(|Resident(e)| !e.seen.load(Ordering::Relaxed))
            .map(|Resident(e)| Box::from(e.id()))
            .collect();
        for k in &stale {
            if let Some(e) = map.get(k.as_ref(), &guard).map(|r| &r.0) {
                let (size, slot) = (self.cost(e), e.slot());
                map.remove(k.as_ref(), &guard);
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
        let old = map.get(rec.id, &guard).map(|r| &r.0);
        if old.is_none() {
            if let Some(budget) = self.store.budget {
                let admitted = match admit {
                    Admit::Always => true,
                    Admit::Resident => false,
                    Admit::UnderBudget => {
                        let len = rec.body.len();
                        let size = (2 * rec.id.len() + head_len_for(len) + len) as u64
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
            if e.version >= rec.version && !force {
                // Seen in Redis (the same version, or a newer one already arrived).
                e.seen.store(true, Ordering::Relaxed);
                return Applied::Stale;
            }
        }
        let entry = Entry::new(rec, self.bounded());
        self.install(entry, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{etag_of, Op};

    #[test]
    fn prefetch_takes_at_most_its_maximum_and_changes_nothing() {
        let (store, mut w) = Store::new();
        let ids: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            w.put(&rec(id, i as u64 + 1, id.as_bytes()));
        }
        w.delete("p7", 1_000);
        let (snapshot, bytes) = (store.snapshot(), store.bytes());
        let guard = store.guard();
        let mut taken = 0;
        let asked = ids
            .iter()
            .map(String::as_str)
            .chain(["absent", "p7", "p1", "p1"]);
        store.prefetch(asked.rev().inspect(|_| taken += 1), &guard);
        assert_eq!(taken, PREFETCH_MAX);
        store.prefetch(std::iter::empty(), &guard);
        assert_eq!((store.snapshot(), store.bytes()), (snapshot, bytes));
        for id in ids.iter().filter(|id| *id != "p7") {
            assert_eq!(store.get(id, &guard).unwrap().body(), id.as_bytes());
        }
        assert!(store.get("p7", &guard).is_none());
    }

    /// What [`Store::prefetch`] relies on from papaya: for every key held,
    /// the first entry of its probe sequence whose metadata matches its hash
    /// is found, also past other keys, emptied slots and the first position.
    #[test]
    fn the_first_candidate_of_every_key_held_is_found() {
        // Resized the way the store resizes.
        let set: papaya::HashSet<String> = papaya::HashSet::builder()
            .resize_mode(papaya::ResizeMode::Blocking)
            .build();
        let guard = set.guard();
        let keys: Vec<String> = (0..20_000).map(|i| format!("post-{i}")).collect();
        for k in &keys {
            set.insert(k.clone(), &guard);
        }
        for k in keys.iter().step_by(3) {
            set.remove(k.as_str(), &guard);
        }
        let meta = |h: u64| h >> 57;
        let (mut own, mut other) = (0, 0);
        for (i, k) in keys.iter().enumerate() {
            let h = set.hash_of(k.as_str());
            let c = set.first_candidate(h, &guard);
            if i % 3 == 0 {
                // Removed: nothing, or some key sharing the metadata.
                if let Some(c) = c {
                    assert_ne!(c, k);
                    assert_eq!(meta(set.hash_of(c.as_str())), meta(h));
                }
                continue;
            }
            let c = c.unwrap_or_else(|| panic!("no candidate for {k}"));
            if c == k {
                own += 1;
            } else {
                assert_eq!(meta(set.hash_of(c.as_str())), meta(h), "{k} → {c}");
                other += 1;
            }
        }
        assert!(own > 99 * (own + other) / 100, "{own} own, {other} other");
    }

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
    fn a_bounded_store_reserves_no_more_than_its_budget_holds() {
        // Unbounded: all of them.
        assert_eq!(reservable(None, 5, 50_000_000), 50_000_000);
        // 1 MiB holds at most 1 MiB / 106 bytes = 9892 entries.
        let per = ENTRY_OVERHEAD + RING_SLOT_OVERHEAD;
        let most = (1u64 << 20) / per;
        assert_eq!(most, 9892);
        assert_eq!(reservable(Some(1 << 20), 0, 50_000_000), 9892);
        assert_eq!(reservable(Some(1 << 20), 9000, 50_000_000), 892);
        assert_eq!(reservable(Some(1 << 20), 9000, 100), 100);
        assert_eq!(reservable(Some(1 << 20), 20_000, 100), 0);
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

    /// What the store should account for, from what each entry serves.
    fn expected_bytes(store: &Store) -> u64 {
        let g = store.guard();
        let ring = store.budget().is_some();
        store
            .snapshot()
            .iter()
            .map(|(id, _, _)| {
                let e = store.map.get(id.as_str(), &g).map(|r| &r.0).unwrap();
                let mut n = (id.len() + e.headers().len() + e.body().len()) as u64 + ENTRY_OVERHEAD;
                if ring {
                    n += id.len() as u64 + RING_SLOT_OVERHEAD;
                }
                n
            })
            .sum()
    }

    #[test]
    fn entries_keep_id_headers_body_and_slot_apart() {
        let long_id = "i".repeat(crate::record::MAX_ID_LEN);
        for len in [0usize, 1, 9, 10, 99, 100, 999, 1_000, 70_000] {
            let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for id in ["x", "post-12345", long_id.as_str()] {
                for with_slot in [false, true] {
                    let mut e = Entry::new(&rec(id, 7, &body), with_slot);
                    let head = format!(
                        "ETag: \"{}\"\r\nContent-Length: {len}\r\n",
                        std::str::from_utf8(&etag_hex(&etag_of(&body))).unwrap()
                    );
                    assert_eq!(e.id(), id);
                    assert_eq!(e.headers(), head.as_bytes());
                    assert_eq!(e.body(), &body[..]);
                    assert_eq!(e.headers_and_body(), [head.as_bytes(), &body].concat());
                    assert_eq!(e.etag(), &head.as_bytes()[6..40]);
                    assert_eq!(e.etag_line(), &head.as_bytes()[..ETAG_LINE]);
                    assert_eq!(e.version(), 7);
                    assert_eq!(e.data_len(), (id.len() + head.len() + len) as u64);
                    assert_eq!(e.slot(), NO_SLOT);
                    e.set_slot(41);
                    assert_eq!(e.slot(), if with_slot { 41 } else { NO_SLOT });
                    // Nothing the slot write touched shows in the served bytes.
                    assert_eq!(e.headers_and_body(), [head.as_bytes(), &body].concat());
                    let c = e.copy(!with_slot);
                    assert_eq!(
                        (c.id(), c.headers_and_body()),
                        (e.id(), e.headers_and_body())
                    );
                    assert_eq!(c.slot(), NO_SLOT);
                }
            }
        }
    }

    #[test]
    fn accounting_equals_the_sum_over_entries() {
        for budget in [None, Some(40 * 600), Some(1 << 30)] {
            let (store, mut w) = Store::with_budget(budget);
            let mut version = 0;
            let mut next = || {
                version += 1;
                version
            };
            for round in 0..4u64 {
                for i in 0..200u64 {
                    let id = format!("p{}", (i * 7 + round) % 150);
                    let body = body(((i * 31 + round * 17) % 700) as usize);
                    let v = next();
                    match (i + round) % 5 {
                        0 => {
                            w.delete(&id, v);
                        }
                        1 => {
                            w.admit(&rec(&id, v, &body));
                        }
                        2 => {
                            let fill = Entry::from_record(&rec(&id, v, &body));
                            w.admit_entry(&id, &fill);
                        }
                        _ => {
                            w.put(&rec(&id, v, &body));
                        }
                    }
                    if i % 50 == 0 {
                        let g = store.guard();
                        let _ = store.get(&id, &g);
                    }
                }
                // A resync that sees only the even ids, then sweeps the rest.
                w.begin_resync();
                for i in (0..150u64).step_by(2) {
                    let id = format!("p{i}");
                    w.resync_put(&rec(&id, next(), b"{}"), round == 3);
                }
                w.sweep();
                assert_eq!(
                    store.bytes(),
                    expected_bytes(&store),
                    "{budget:?} round {round}"
                );
                assert_eq!(store.bytes(), store.recount_bytes());
                if let Some(b) = budget {
                    assert!(store.bytes() <= b, "{} over {b}", store.bytes());
                }
            }
            for (id, _, _) in store.snapshot() {
                w.delete(&id, u64::MAX);
            }
            assert_eq!((store.bytes(), store.len()), (0, 0), "{budget:?}");
        }
    }

    #[test]
    fn an_interrupted_resync_does_not_shield_ids_from_the_next_sweep() {
        let (store, mut w) = Store::new();
        for id in ["a", "b", "c"] {
            w.put(&rec(id, 1, b"v"));
        }
        // Sees only `a`, then is abandoned (no sweep).
        w.begin_resync();
        w.resync_put(&rec("a", 1, b"v"), false);
        // The next one sees only `b`: `a` and `c` go.
        w.begin_resync();
        w.resync_put(&rec("b", 1, b"v"), false);
        // A fill admitted during the resync counts as seen.
        w.admit_entry("d", &Entry::from_record(&rec("d", 2, b"v")));
        assert_eq!(w.sweep(), 2);
        let ids: Vec<String> = store.snapshot().into_iter().map(|s| s.0).collect();
        assert_eq!(ids, ["b", "d"]);
    }

    #[test]
    fn a_fill_entry_outlives_its_copy_in_the_store() {
        let (store, mut w) = Store::bounded(1 << 20);
        let fill = Entry::from_record(&rec("f", 3, b"{\"f\":1}"));
        assert_eq!(w.admit_entry("f", &fill), Applied::Inserted);
        assert_eq!(w.admit_entry("f", &fill), Applied::Stale);
        assert_eq!(w.delete("f", 4), Applied::Removed);
        drop(store);
        drop(w);
        assert_eq!(fill.body(), b"{\"f\":1}");
        assert_eq!(fill.id(), "f");
    }
}
