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

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::record::{etag_hex, RecordRef};

/// A pinned epoch guard; entries borrowed under it stay valid until it drops.
pub type Guard<'a> = papaya::LocalGuard<'a>;

/// Bytes counted per entry beyond its key and data: the map slot, the entry
/// node and allocator headers (measured with 1M entries, see the benchmarks).
pub const ENTRY_OVERHEAD: u64 = 96;

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
    /// Header fragment followed by the body, in one allocation.
    data: Bytes,
}

impl Entry {
    fn new(rec: &RecordRef<'_>, generation: u32) -> Self {
        let len_buf = itoa_buf(rec.body.len() as u64);
        let len_digits = len_buf.as_slice();
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

    fn size(&self, key: &str) -> u64 {
        self.data.len() as u64 + key.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Decimal digits of `n` without the formatting machinery.
fn itoa_buf(mut n: u64) -> Vec<u8> {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    tmp[i..].to_vec()
}

/// The map every executor reads.
#[derive(Debug)]
pub struct Store {
    map: papaya::HashMap<Box<str>, Entry>,
    /// Accounted bytes (data + key + [`ENTRY_OVERHEAD`] per entry); only the
    /// writer changes it.
    bytes: AtomicU64,
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
}

impl Store {
    /// A new empty store and its only writer.
    pub fn new() -> (Arc<Store>, StoreWriter) {
        let store = Arc::new(Store {
            map: papaya::HashMap::new(),
            bytes: AtomicU64::new(0),
        });
        let writer = StoreWriter {
            store: Arc::clone(&store),
            generation: 0,
        };
        (store, writer)
    }

    /// Pins the current thread; hold the guard while using borrowed entries.
    pub fn guard(&self) -> Guard<'_> {
        self.map.guard()
    }

    /// The entry for `id`, if present. Lock-free; allocates nothing.
    #[inline]
    pub fn get<'g>(&self, id: &str, guard: &'g Guard<'_>) -> Option<&'g Entry> {
        self.map.get(id, guard)
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
}

impl StoreWriter {
    /// The store this writer changes.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Applies a put if it is newer than what the store holds.
    pub fn put(&mut self, rec: &RecordRef<'_>) -> Applied {
        self.put_inner(rec, false)
    }

    /// Applies a delete of `id` at `version` if the held entry is older.
    pub fn delete(&mut self, id: &str, version: u64) -> Applied {
        let map = &self.store.map;
        let guard = map.guard();
        match map.get(id, &guard) {
            Some(e) if e.version < version => {
                let size = e.size(id);
                map.remove(id, &guard);
                self.store.bytes.fetch_sub(size, Ordering::Relaxed);
                Applied::Removed
            }
            _ => Applied::Stale,
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
    pub fn resync_put(&mut self, rec: &RecordRef<'_>, force: bool) -> Applied {
        self.put_inner(rec, force)
    }

    /// Removes every entry the current resync did not see; returns how many.
    pub fn sweep(&mut self) -> usize {
        let map = &self.store.map;
        let guard = map.guard();
        let gen = self.generation;
        let stale: Vec<Box<str>> = map
            .iter(&guard)
            .filter(|(_, e)| e.generation.load(Ordering::Relaxed) != gen)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            if let Some(e) = map.remove(k.as_ref(), &guard) {
                self.store.bytes.fetch_sub(e.size(k), Ordering::Relaxed);
            }
        }
        stale.len()
    }

    fn put_inner(&mut self, rec: &RecordRef<'_>, force: bool) -> Applied {
        let map = &self.store.map;
        let guard = map.guard();
        let old = map.get(rec.id, &guard);
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
        let new_size = entry.size(rec.id);
        let old_size = old.map(|e| e.size(rec.id)).unwrap_or(0);
        map.insert(rec.id.into(), entry, &guard);
        self.store.bytes.fetch_add(new_size, Ordering::Relaxed);
        self.store.bytes.fetch_sub(old_size, Ordering::Relaxed);
        if old.is_some() {
            Applied::Replaced
        } else {
            Applied::Inserted
        }
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
}
