//! The Redis schema and the function library that changes it.
//!
//! Every key carries one hash tag, `{prefix}`, so a Redis Cluster slot holds a
//! whole version sequence:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:posts` | hash | id → stored record (see [`crate::record`]) |
//! | `{p}:version` | string | the global version, one per change |
//! | `{p}:log` | stream | one entry per change, id `<version>-1`, fields `op`, `id`, `ts` (the record's writer timestamp, 8 bytes big-endian); or one entry per batch of n consecutive changes, id `<last version>-<n>`, its `id` field the n ids joined by single spaces and its `ts` field the n timestamps back to back; capped with `MAXLEN ~` (single changes) or `MINID ~` (batches, to about the last max-length versions) |
//! | `{p}:epoch` | string | set once; a new value means Redis lost its data |
//! | `{p}:changes` | channel | the full record of every change: one per message, or a batch's records back to back in version order |
//!
//! Writes go through one Redis Function library, [`LIBRARY`], loaded with
//! `FUNCTION LOAD REPLACE`. `put` and `delete` each bump the version, XADD,
//! HSET/HDEL and PUBLISH in one atomic call and return the new version, so
//! publish order is version order. Nothing is written before the arguments
//! are checked and the log accepted the entry.
//!
//! `put_batch` (library version 4) is what seeding (`POST /bulk`) used until
//! `put_packed` (below) took its place: it
//! stores the posts exactly as `put_many` does, but writes one log entry and
//! publishes one message for the whole call (see the table), which halves
//! Redis's work per post. Readers that understand batch entries and
//! messages must be deployed before writers that call it: a reader built
//! before it rejects a batch message as malformed and falls back to a full
//! resync at a batch log entry.
//!
//! `put_many` (library version 3) is `put` called once per post, in order,
//! in one atomic call: each post gets the next version, its own log entry
//! and its own published record, exactly as if `put` had run N times in a
//! row with nothing in between; only the per-call overhead (one command to
//! parse, one script entry, one version SET, one log trim and one HSET for
//! all posts) is shared. Writers before `put_batch` seeded with it; a single
//! write still goes through `put`. Building each record's bytes in Lua costs
//! about as much as the rest of a post's work, so the caller may send the
//! templates with the versions it expects already written in (see
//! [`LIBRARY`]); the function checks each one and rebuilds those that are wrong.
//! Readers never call functions: they read with plain commands (`MGET`,
//! `XRANGE`, `HMGET`, `HSCAN`), which also work on replicas.
//!
//! The log's `ts` field and the entry's `id` fingerprint each change: a
//! reader checks on reconnect that the entry at the last version it applied
//! still has the fingerprint it saw, so a Redis that came back with another
//! history under the same epoch is noticed (library version 2).
//!
//! `put_packed` (library version 6) is what seeding uses since: it writes
//! exactly what `put_batch` writes for the same templates, but takes them
//! back to back in one argument, which is also the message it publishes
//! when the writer guessed every version right. Redis 7's Lua hashes every
//! byte of every string it creates, and `put_batch` creates each record
//! again (more than once over) when it joins the records into its message;
//! `put_packed` cuts each record from its argument once and publishes the
//! argument as it is (the report's discussion of `/bulk` has the measurement).
//!
//! Library version 5 checks every template whole in every function (its
//! lengths add up, its id is in the alphabet, a delete has no body and a
//! zero etag), as `put_batch` already did for its puts: `put` and `delete`
//! checked only the format byte,
//! the op and the id, so a client calling them directly could store and
//! publish a record that no reader can decode, leaving every reader on the
//! id's previous state. Valid calls answer and write exactly as before.

/// Name of the function library; bump [`LIBRARY_VERSION`] with any change to it.
pub const LIBRARY_NAME: &str = "heavyread";
/// Version of the function library's contract, returned by `heavyread_version`.
///
/// Versions only add: a new one keeps every function of the older ones,
/// with the same keys, arguments, answers and effects, so a writer that
/// finds a newer library than its own uses it and leaves it loaded; only a
/// missing or older one is replaced.
pub const LIBRARY_VERSION: u32 = 6;

/// The Lua source of the function library.
///
/// Keys of `heavyread_put`, `heavyread_delete`, `heavyread_put_many`,
/// `heavyread_put_batch` and `heavyread_put_packed`:
/// posts, version, log, epoch. Arguments of `put` and `delete`: channel, log
/// max length, id, record template (version zero). Arguments of `put_many`
/// and `put_batch`: channel, log max length, then one put template per post, whose version
/// field is zero or the version the caller expects the post to get (kept
/// only when right, so it is never trusted); it returns the version of its
/// last post (the first is that minus the number of posts, plus one).
/// Arguments of `put_packed`: channel, log max length, and the same
/// templates back to back in one argument; it answers as `put_batch`.
/// Every function checks each template whole before writing anything: its
/// lengths, its id alphabet, and a delete's empty body and zero etag
/// (library version 5; before it only `put_batch` did).
pub const LIBRARY: &str = r#"#!lua name=heavyread

local FIXED = 36
local MAX_ID = 128
local MAX_BODY = 16777216

-- The record's version field is a big-endian u64 at offset 2 (see record.rs).
local function u64be(n)
  local t = {}
  for i = 8, 1, -1 do
    t[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(t)
end

-- A version as the digits of a stream id: Lua's own conversion of a number
-- to a string keeps 14 significant digits, so from version 10^14 on it
-- would write 1e+14 and every XADD would fail.
local function int(n)
  return string.format('%.0f', n)
end

local function ensure_epoch(key)
  if redis.call('EXISTS', key) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', key, t[1] .. '.' .. t[2])
  end
end

local function check_maxlen(arg)
  local maxlen = tonumber(arg)
  if not maxlen or maxlen < 1 or maxlen ~= math.floor(maxlen) then
    return 'heavyread: log max length must be a positive integer'
  end
  return nil
end

-- The id and the index of the last byte of the record template of op (1
-- put, 2 delete) that starts at index o of s, when it is whole: its id is
-- 1..MAX_ID bytes of the id alphabet, its lengths fit within s, its body is
-- within the decoders' 16 MiB, and a delete has no body and a zero etag.
-- nil for anything else: one stored or published record that readers
-- cannot decode would leave them serving the id's previous state while
-- Redis holds this.
local function template_at(s, o, op)
  local left = #s - o + 1
  if left < FIXED + 4 or string.byte(s, o) ~= 1 or string.byte(s, o + 1) ~= op then
    return nil
  end
  local idlen = string.byte(s, o + 34) * 256 + string.byte(s, o + 35)
  if idlen < 1 or idlen > MAX_ID or left < FIXED + idlen + 4 then
    return nil
  end
  local id = string.sub(s, o + FIXED, o + FIXED + idlen - 1)
  if string.find(id, '[^%w%._~%-]') then
    return nil
  end
  local b1, b2, b3, b4 = string.byte(s, o + FIXED + idlen, o + FIXED + idlen + 3)
  local bodylen = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  local stop = o + FIXED + idlen + 3 + bodylen
  if bodylen > MAX_BODY or stop > #s then
    return nil
  end
  -- A delete carries no body and a zero etag.
  if op == 2 and (bodylen ~= 0 or string.sub(s, o + 18, o + 33) ~= string.rep('\0', 16)) then
    return nil
  end
  return id, stop
end

-- The id of t when t is exactly one whole record template of op; nil
-- otherwise.
local function template_id(t, op)
  local id, stop = template_at(t, 1, op)
  if stop ~= #t then
    return nil
  end
  return id
end

local function check_record(id, rec, op)
  local inside = template_id(rec, op)
  if not inside then
    return 'heavyread: malformed record template'
  end
  if inside ~= id then
    return 'heavyread: record id does not match the id argument'
  end
  return nil
end

local function check(keys, args, op)
  if #keys ~= 4 or #args ~= 4 then
    return 'heavyread: expected 4 keys and 4 arguments'
  end
  return check_maxlen(args[2]) or check_record(args[3], args[4], op)
end

-- XADD is the only step that can fail on valid input (a log whose last id
-- is above the version, after tampering), so it runs before the version or
-- the hash change: a failed call leaves no half-written change behind.
local function apply(keys, args, opname)
  ensure_epoch(keys[4])
  local v = tonumber(redis.call('GET', keys[2]) or '0') + 1
  local rec = string.sub(args[4], 1, 2) .. u64be(v) .. string.sub(args[4], 11)
  redis.call('XADD', keys[3], 'MAXLEN', '~', args[2], int(v) .. '-1', 'op', opname, 'id', args[3], 'ts', string.sub(rec, 11, 18))
  redis.call('SET', keys[2], v)
  if opname == 'put' then
    redis.call('HSET', keys[1], args[3], rec)
  else
    redis.call('HDEL', keys[1], args[3])
  end
  redis.call('PUBLISH', args[1], rec)
  return v
end

local function put(keys, args)
  local err = check(keys, args, 1)
  if err then return redis.error_reply(err) end
  return apply(keys, args, 'put')
end

local function delete(keys, args)
  local err = check(keys, args, 2)
  if err then return redis.error_reply(err) end
  if redis.call('HEXISTS', keys[1], args[3]) == 0 then
    return 0
  end
  return apply(keys, args, 'del')
end

-- Fields per HSET call of put_many (even: whole pairs), well under the
-- Lua stack limit of unpack.
local HSET_ARGS = 1024

-- The arguments of put_many and put_batch: an error, or nil.
local function check_batch(keys, args)
  if #keys ~= 4 or #args < 3 then
    return 'heavyread: expected 4 keys, 2 arguments and at least one record template'
  end
  return check_maxlen(args[2])
end

-- The template with version v written in: as it is when it already holds
-- v, a new string otherwise.
local function with_version(t, v)
  local vb = struct.pack('>I8', v)
  if string.sub(t, 3, 10) ~= vb then
    t = string.sub(t, 1, 2) .. vb .. string.sub(t, 11)
  end
  return t
end

-- HSET of id/record pairs in order (a later post for the same id wins, as
-- with put), HSET_ARGS fields per call.
local function hset_pairs(key, fields)
  for h = 1, #fields, HSET_ARGS do
    redis.call('HSET', key, unpack(fields, h, math.min(h + HSET_ARGS - 1, #fields)))
  end
end

-- put, once per record template, in one call, as if put had run for each
-- in order: each post gets the next version, its own log entry and its own
-- message. The id is the one inside the template. A template's version
-- field may hold the version the caller expects the post to get; it is kept
-- when it is exactly that and written over otherwise, so the stored and
-- published records always carry the version given here (a right guess
-- only saves building a new string per post).
-- Every template is checked before anything is written. The XADDs run
-- first, as in apply: only the first can fail on valid input (the ids after
-- it are larger), so a failed call leaves no half-written batch behind. The
-- log is trimmed once, after them (the same whole nodes go as with a
-- MAXLEN ~ on each XADD).
local function put_many(keys, args)
  local err = check_batch(keys, args)
  if err then return redis.error_reply(err) end
  local n = #args - 2
  local ids = {}
  for j = 1, n do
    ids[j] = template_id(args[j + 2], 1)
    if not ids[j] then
      return redis.error_reply('heavyread: malformed record template')
    end
  end
  ensure_epoch(keys[4])
  local v0 = tonumber(redis.call('GET', keys[2]) or '0')
  local fields = {}
  for j = 1, n do
    local v = v0 + j
    local t = with_version(args[j + 2], v)
    redis.call('XADD', keys[3], int(v) .. '-1', 'op', 'put', 'id', ids[j], 'ts', string.sub(t, 11, 18))
    fields[2 * j - 1] = ids[j]
    fields[2 * j] = t
  end
  redis.call('XTRIM', keys[3], 'MAXLEN', '~', args[2])
  redis.call('SET', keys[2], v0 + n)
  hset_pairs(keys[1], fields)
  for j = 2, #fields, 2 do
    redis.call('PUBLISH', args[1], fields[j])
  end
  return v0 + n
end

-- The writes of a batch call whose n posts end at version last: one log
-- entry `<last>-<n>` (MINID trim to about the last maxlen versions), the
-- version, the hash (fields: id, record pairs in version order) and one
-- message.
local function write_batch(keys, args, last, ids, tss, fields, message)
  local maxlen = tonumber(args[2])
  redis.call('XADD', keys[3], 'MINID', '~', math.max(0, last - maxlen + 1), int(last) .. '-' .. #ids,
    'op', 'put', 'id', table.concat(ids, ' '), 'ts', table.concat(tss))
  redis.call('SET', keys[2], last)
  hset_pairs(keys[1], fields)
  redis.call('PUBLISH', args[1], message)
  return last
end

-- put_batch (library version 4) stores the same posts with the same
-- versions as put_many, but logs and publishes the call as a whole: one log
-- entry `<last>-<n>` for its n consecutive versions, whose `id` field holds
-- the n ids separated by single spaces and whose `ts` field the n writer
-- timestamps (8 bytes each), in version order; and one message, the n
-- records back to back. With n = 1 both are exactly what put writes. Every
-- template is checked whole (its lengths add up to its size, its body is
-- within the decoders' 16 MiB and its id is in the id alphabet), because
-- one bad template would make the message or the log entry unreadable for
-- the others. The log is trimmed to about the
-- last `maxlen` versions (MINID), not entries: an entry covers up to a few
-- hundred versions.
local function put_batch(keys, args)
  local err = check_batch(keys, args)
  if err then return redis.error_reply(err) end
  local n = #args - 2
  local ids = {}
  for j = 1, n do
    local id = template_id(args[j + 2], 1)
    if not id then
      return redis.error_reply('heavyread: malformed record template')
    end
    ids[j] = id
  end
  ensure_epoch(keys[4])
  local v0 = tonumber(redis.call('GET', keys[2]) or '0')
  local last = v0 + n
  local fields, recs, tss = {}, {}, {}
  for j = 1, n do
    local t = with_version(args[j + 2], v0 + j)
    tss[j] = string.sub(t, 11, 18)
    fields[2 * j - 1] = ids[j]
    fields[2 * j] = t
    recs[j] = t
  end
  return write_batch(keys, args, last, ids, tss, fields, table.concat(recs))
end

-- put_packed (library version 6) is put_batch with its n record templates
-- sent back to back in one argument, which is the message put_batch would
-- publish for them when every version guess is right. It stores, logs and
-- publishes exactly what put_batch does with the same templates. Lua hashes
-- every string it creates, byte by byte: put_batch creates each record
-- twice over and more (its argument, then the message built from the
-- records, whose buffer Lua merges in steps that hash the bytes again),
-- while put_packed creates each record once, cut from the argument, and
-- publishes the argument as it is. A wrong guess is written over, as in
-- put_batch, and the message is then built from the corrected records.
local function put_packed(keys, args)
  if #keys ~= 4 or #args ~= 3 then
    return redis.error_reply('heavyread: expected 4 keys and 3 arguments')
  end
  local err = check_maxlen(args[2])
  if err then return redis.error_reply(err) end
  local packed = args[3]
  local ids, starts, stops = {}, {}, {}
  local o, n = 1, 0
  while o <= #packed do
    local id, stop = template_at(packed, o, 1)
    if not id then
      return redis.error_reply('heavyread: malformed record template')
    end
    n = n + 1
    ids[n], starts[n], stops[n] = id, o, stop
    o = stop + 1
  end
  if n == 0 then
    return redis.error_reply('heavyread: expected at least one record template')
  end
  ensure_epoch(keys[4])
  local v0 = tonumber(redis.call('GET', keys[2]) or '0')
  local last = v0 + n
  local fields, recs, tss = {}, {}, {}
  local rebuilt = false
  for j = 1, n do
    local piece = string.sub(packed, starts[j], stops[j])
    local t = with_version(piece, v0 + j)
    if t ~= piece then
      rebuilt = true
    end
    tss[j] = string.sub(t, 11, 18)
    fields[2 * j - 1] = ids[j]
    fields[2 * j] = t
    recs[j] = t
  end
  local message = packed
  if rebuilt then
    message = table.concat(recs)
  end
  return write_batch(keys, args, last, ids, tss, fields, message)
end

local function version(keys, args)
  return 6
end

redis.register_function('heavyread_put', put)
redis.register_function('heavyread_delete', delete)
redis.register_function('heavyread_put_many', put_many)
redis.register_function('heavyread_put_batch', put_batch)
redis.register_function('heavyread_put_packed', put_packed)
redis.register_function{function_name = 'heavyread_version', callback = version, flags = {'no-writes'}}
"#;

/// Default key prefix (the hash tag's content).
pub const DEFAULT_PREFIX: &str = "hr";
/// Default approximate length of the change log.
pub const DEFAULT_LOG_MAX_LEN: u64 = 1_000_000;

/// The key and channel names of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Hash of id → record.
    pub posts: String,
    /// Global version counter.
    pub version: String,
    /// Capped change log (stream).
    pub log: String,
    /// Random id of this Redis dataset.
    pub epoch: String,
    /// Pub/sub channel carrying every record.
    pub channel: String,
}

/// A prefix that is not usable as a hash tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key prefix {0:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ - :")]
pub struct BadPrefix(pub String);

impl Keys {
    /// The names for `prefix` (1–64 characters of `A-Z a-z 0-9 . _ - :`).
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if !ok {
            return Err(BadPrefix(prefix.to_owned()));
        }
        let tag = format!("{{{prefix}}}");
        Ok(Keys {
            posts: format!("{tag}:posts"),
            version: format!("{tag}:version"),
            log: format!("{tag}:log"),
            epoch: format!("{tag}:epoch"),
            channel: format!("{tag}:changes"),
        })
    }

    /// The four keys the write functions take, in their order.
    pub fn function_keys(&self) -> [&str; 4] {
        [&self.posts, &self.version, &self.log, &self.epoch]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = Keys::new("hr").unwrap();
        assert_eq!(k.posts, "{hr}:posts");
        assert_eq!(k.version, "{hr}:version");
        assert_eq!(k.log, "{hr}:log");
        assert_eq!(k.epoch, "{hr}:epoch");
        assert_eq!(k.channel, "{hr}:changes");
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        for p in ["", "a}b", "a{b", "a b", &"x".repeat(65)] {
            assert!(Keys::new(p).is_err(), "{p:?}");
        }
    }
}
