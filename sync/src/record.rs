//! The record: the one binary form of a change, shared by the writer, Redis
//! and every reader.
//!
//! A record is what the writer publishes, what the `{prefix}:posts` hash stores
//! for each id, and what the sync thread decodes. It is length-prefixed and
//! big-endian, with a format byte so the layout can evolve:
//!
//! ```text
//! offset  size  field
//! 0       1     format (1)
//! 1       1     op (1 = put, 2 = delete)
//! 2       8     version (u64; 0 in the writer's template, set by the Redis function)
//! 10      8     writer timestamp (unix nanoseconds, for propagation metrics)
//! 18      16    etag (raw MD5 of the body; zero for a delete)
//! 34      2     id length (u16, 1..=MAX_ID_LEN)
//! 36      n     id (bytes of A-Z a-z 0-9 . _ ~ -)
//! 36+n    4     body length (u32, <= MAX_BODY_LEN; 0 for a delete)
//! 40+n    m     body (the JSON exactly as readers serve it)
//! ```
//!
//! Decoding is strict and bounded: every length is checked against the bytes
//! present and against the limits, trailing bytes are rejected, and nothing
//! panics on any input.

use md5::{Digest, Md5};

/// The format byte of the layout above.
pub const FORMAT: u8 = 1;
/// Offset of the version field; the Redis function writes the version there.
pub const VERSION_OFFSET: usize = 2;
/// Bytes before the id.
pub const FIXED_HEADER: usize = 36;
/// The longest id accepted anywhere.
pub const MAX_ID_LEN: usize = 128;
/// The largest body a record may carry (16 MiB). The writer enforces its own,
/// smaller, configurable limit; this bound only keeps decoding finite.
pub const MAX_BODY_LEN: usize = 16 << 20;

/// What a record does to its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Create or replace the id's body.
    Put = 1,
    /// Remove the id.
    Delete = 2,
}

/// Why a byte string is not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the lengths announce.
    #[error("record truncated")]
    Truncated,
    /// Bytes after the body.
    #[error("trailing bytes after the record")]
    Trailing,
    /// A format byte this build does not know.
    #[error("unknown record format {0}")]
    Format(u8),
    /// An op byte that is neither put nor delete.
    #[error("unknown op {0}")]
    Op(u8),
    /// Empty, too long, or with a character outside the id alphabet.
    #[error("invalid id")]
    Id,
    /// Body larger than [`MAX_BODY_LEN`].
    #[error("body too large")]
    BodyTooLarge,
    /// A delete that carries a body or an etag.
    #[error("delete record with a body or etag")]
    DeleteWithBody,
}

/// A decoded record, borrowing the bytes it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Put or delete.
    pub op: Op,
    /// The global version the Redis function gave this change.
    pub version: u64,
    /// When the writer built the record (unix ns); propagation is measured from it.
    pub written_at_ns: u64,
    /// Raw MD5 of the body (zero for a delete).
    pub etag: [u8; 16],
    /// The post id, already checked against the id alphabet.
    pub id: &'a str,
    /// The body exactly as served.
    pub body: &'a [u8],
}

/// True when `id` is 1..=[`MAX_ID_LEN`] bytes of `A-Z a-z 0-9 . _ ~ -`.
pub fn valid_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.iter().all(|&b| ID_BYTE[usize::from(b)])
}

/// The id alphabet as a table: one load per byte on the request path.
static ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'~' | b'-');
        b += 1;
    }
    t
};

/// MD5 of a body, the etag of every put.
pub fn etag_of(body: &[u8]) -> [u8; 16] {
    Md5::digest(body).into()
}

/// Lowercase hex of an etag, as it appears inside the quotes of an HTTP `ETag`.
pub fn etag_hex(etag: &[u8; 16]) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in etag.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if buf.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

impl<'a> RecordRef<'a> {
    /// Decodes one record occupying all of `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (rec, rest) = Self::decode_prefix(bytes)?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing);
        }
        Ok(rec)
    }

    /// Decodes the record at the start of `bytes` and returns it with the
    /// bytes after it: a batch message is records back to back (see
    /// [`records`]).
    pub fn decode_prefix(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), DecodeError> {
        let mut buf = bytes;
        let fixed = take(&mut buf, FIXED_HEADER)?;
        if fixed[0] != FORMAT {
            return Err(DecodeError::Format(fixed[0]));
        }
        let op = match fixed[1] {
            1 => Op::Put,
            2 => Op::Delete,
            other => return Err(DecodeError::Op(other)),
        };
        let version = be_u64(&fixed[2..10]);
        let written_at_ns = be_u64(&fixed[10..18]);
        let mut etag = [0u8; 16];
        etag.copy_from_slice(&fixed[18..34]);
        let id_len = usize::from(u16::from_be_bytes([fixed[34], fixed[35]]));
        if id_len == 0 || id_len > MAX_ID_LEN {
            return Err(DecodeError::Id);
        }
        let id = take(&mut buf, id_len)?;
        if !valid_id(id) {
            return Err(DecodeError::Id);
        }
        // The alphabet is ASCII, so this cannot fail; map it anyway rather than unwrap.
        let id = std::str::from_utf8(id).map_err(|_| DecodeError::Id)?;
        let len = take(&mut buf, 4)?;
        let body_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if body_len > MAX_BODY_LEN {
            return Err(DecodeError::BodyTooLarge);
        }
        let body = take(&mut buf, body_len)?;
        if op == Op::Delete && (!body.is_empty() || etag != [0u8; 16]) {
            return Err(DecodeError::DeleteWithBody);
        }
        let rec = RecordRef {
            op,
            version,
            written_at_ns,
            etag,
            id,
            body,
        };
        Ok((rec, buf))
    }

    /// Encodes the record; `decode(encode(r)) == r` for every valid record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_HEADER + self.id.len() + 4 + self.body.len());
        out.push(FORMAT);
        out.push(self.op as u8);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.written_at_ns.to_be_bytes());
        out.extend_from_slice(&self.etag);
        // Ids are bounded by MAX_ID_LEN and bodies by MAX_BODY_LEN in every
        // constructor; saturate rather than wrap if a caller broke that.
        out.extend_from_slice(
            &u16::try_from(self.id.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(
            &u32::try_from(self.body.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(self.body);
        out
    }
}

/// The records of a published message, in order: one for a single change,
/// several back to back for a batch (`heavyread_put_batch`,
/// `heavyread_put_packed`). An empty
/// message is malformed; after the first error the iterator ends.
pub fn records(message: &[u8]) -> Records<'_> {
    Records {
        rest: message,
        done: false,
    }
}

/// Iterator of [`records`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordRef<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = RecordRef::decode_prefix(self.rest);
        match next {
            Ok((rec, rest)) => {
                self.rest = rest;
                self.done = rest.is_empty();
                Some(Ok(rec))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Why the writer cannot build a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The id is empty, too long or outside the id alphabet.
    #[error("id must be 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ ~ -")]
    Id,
    /// The body exceeds [`MAX_BODY_LEN`].
    #[error("body exceeds {MAX_BODY_LEN} bytes")]
    BodyTooLarge,
}

/// Builds the template of a put (version 0; the Redis function sets it) and
/// returns it with the body's etag. A batch (`heavyread_put_packed`) sends the
/// same template with the version the writer expects written in; Redis keeps
/// it only when it is right (see [`crate::schema::LIBRARY`]).
pub fn put_template(
    id: &str,
    body: &[u8],
    written_at_ns: u64,
) -> Result<(Vec<u8>, [u8; 16]), EncodeError> {
    if !valid_id(id.as_bytes()) {
        return Err(EncodeError::Id);
    }
    if body.len() > MAX_BODY_LEN {
        return Err(EncodeError::BodyTooLarge);
    }
    let etag = etag_of(body);
    let rec = RecordRef {
        op: Op::Put,
        version: 0,
        written_at_ns,
        etag,
        id,
        body,
    };
    Ok((rec.encode(), etag))
}

/// Builds the template of a delete (version 0; the Redis function sets it).
pub fn delete_template(id: &str, written_at_ns: u64) -> Result<Vec<u8>, EncodeError> {
    if !valid_id(id.as_bytes()) {
        return Err(EncodeError::Id);
    }
    Ok(RecordRef {
        op: Op::Delete,
        version: 0,
        written_at_ns,
        etag: [0; 16],
        id,
        body: &[],
    }
    .encode())
}

/// Unix time in nanoseconds, as records carry it.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let (mut rec, _) = put_template("post-1", br#"{"id":"post-1"}"#, 42).unwrap();
        rec[VERSION_OFFSET..VERSION_OFFSET + 8].copy_from_slice(&7u64.to_be_bytes());
        rec
    }

    #[test]
    fn the_id_alphabet_is_exactly_letters_digits_and_four_marks() {
        let alphabet: Vec<u8> = (b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain(b'0'..=b'9')
            .chain(*b"._~-")
            .collect();
        for b in 0..=u8::MAX {
            assert_eq!(valid_id(&[b]), alphabet.contains(&b), "byte {b:#04x}");
        }
        assert!(valid_id(&[b'a'; MAX_ID_LEN]));
        assert!(!valid_id(&[b'a'; MAX_ID_LEN + 1]));
        assert!(!valid_id(b""));
    }

    #[test]
    fn put_template_decodes_with_the_body_etag() {
        let rec = sample();
        let r = RecordRef::decode(&rec).unwrap();
        assert_eq!(r.op, Op::Put);
        assert_eq!(r.version, 7);
        assert_eq!(r.written_at_ns, 42);
        assert_eq!(r.id, "post-1");
        assert_eq!(r.body, br#"{"id":"post-1"}"#);
        assert_eq!(r.etag, etag_of(br#"{"id":"post-1"}"#));
    }

    #[test]
    fn etag_hex_is_lowercase_md5() {
        assert_eq!(
            &etag_hex(&etag_of(b"")),
            b"d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        let rec = sample();
        for n in 0..rec.len() {
            assert_eq!(
                RecordRef::decode(&rec[..n]),
                Err(DecodeError::Truncated),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut rec = sample();
        rec.push(0);
        assert_eq!(RecordRef::decode(&rec), Err(DecodeError::Trailing));
    }

    #[test]
    fn bad_format_op_and_id_are_rejected() {
        let mut rec = sample();
        rec[0] = 9;
        assert_eq!(RecordRef::decode(&rec), Err(DecodeError::Format(9)));
        let mut rec = sample();
        rec[1] = 3;
        assert_eq!(RecordRef::decode(&rec), Err(DecodeError::Op(3)));
        let mut rec = sample();
        rec[FIXED_HEADER] = b'/';
        assert_eq!(RecordRef::decode(&rec), Err(DecodeError::Id));
        let mut rec = sample();
        rec[34] = 0;
        rec[35] = 0;
        assert_eq!(RecordRef::decode(&rec), Err(DecodeError::Id));
        assert_eq!(put_template("a/b", b"", 0), Err(EncodeError::Id));
        assert_eq!(put_template(&"x".repeat(129), b"", 0), Err(EncodeError::Id));
        assert!(put_template(&"x".repeat(128), b"", 0).is_ok());
    }

    #[test]
    fn a_message_holds_one_record_or_several_back_to_back() {
        let one = sample();
        let got: Vec<_> = records(&one).collect();
        assert_eq!(got, vec![RecordRef::decode(&one)]);
        let (mut second, _) = put_template("post-2", b"{}", 43).unwrap();
        second[VERSION_OFFSET..VERSION_OFFSET + 8].copy_from_slice(&8u64.to_be_bytes());
        let del = delete_template("post-1", 44).unwrap();
        let batch = [one.clone(), second.clone(), del.clone()].concat();
        let got: Vec<_> = records(&batch).map(Result::unwrap).collect();
        assert_eq!(
            got.iter()
                .map(|r| (r.id, r.version, r.op))
                .collect::<Vec<_>>(),
            vec![
                ("post-1", 7, Op::Put),
                ("post-2", 8, Op::Put),
                ("post-1", 0, Op::Delete)
            ]
        );
        assert_eq!(got[1].body, b"{}");
        // An empty message is one error, not zero records.
        assert_eq!(
            records(&[]).collect::<Vec<_>>(),
            vec![Err(DecodeError::Truncated)]
        );
        // A cut anywhere in the batch: the whole records before it, then one
        // error unless the cut falls between two records.
        let ends = [one.len(), one.len() + second.len()];
        for n in 1..batch.len() {
            let got: Vec<_> = records(&batch[..n]).collect();
            let whole = ends.iter().filter(|&&end| end <= n).count();
            assert!(got[..whole].iter().all(Result::is_ok), "cut at {n}");
            if ends.contains(&n) {
                assert_eq!(got.len(), whole, "cut at {n}");
            } else {
                assert_eq!(got[whole..], [Err(DecodeError::Truncated)], "cut at {n}");
            }
        }
        // Garbage after a good record ends the iteration with its error.
        let mut bad = one.clone();
        bad.extend_from_slice(&[9; 40]);
        let got: Vec<_> = records(&bad).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(DecodeError::Format(9)));
    }

    #[test]
    fn huge_body_length_is_rejected_without_allocating() {
        let mut rec = sample();
        let at = FIXED_HEADER + "post-1".len();
        rec[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(RecordRef::decode(&rec), Err(DecodeError::BodyTooLarge));
    }

    #[test]
    fn delete_with_body_is_rejected() {
        let del = delete_template("a", 1).unwrap();
        assert_eq!(RecordRef::decode(&del).unwrap().op, Op::Delete);
        let mut bad = sample();
        bad[1] = Op::Delete as u8;
        assert_eq!(RecordRef::decode(&bad), Err(DecodeError::DeleteWithBody));
    }

    fn id_strategy() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9._~-]{1,128}").unwrap()
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(
            id in id_strategy(),
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            version in any::<u64>(),
            ts in any::<u64>(),
            delete in any::<bool>(),
        ) {
            let (op, body, etag) = if delete {
                (Op::Delete, Vec::new(), [0; 16])
            } else {
                let e = etag_of(&body);
                (Op::Put, body, e)
            };
            let r = RecordRef { op, version, written_at_ns: ts, etag, id: &id, body: &body };
            let bytes = r.encode();
            prop_assert_eq!(RecordRef::decode(&bytes), Ok(r));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(r) = RecordRef::decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes: nothing was guessed.
                prop_assert_eq!(r.encode(), bytes);
            }
        }

        #[test]
        fn mutated_records_never_panic(pos in 0usize..64, byte in any::<u8>(), cut in 0usize..64) {
            let mut rec = sample();
            let p = pos % rec.len();
            rec[p] = byte;
            rec.truncate(rec.len().saturating_sub(cut % 4));
            if let Ok(r) = RecordRef::decode(&rec) {
                prop_assert_eq!(r.encode(), rec);
            }
        }
    }
}
