//! The post: what a client sends, how it is checked, and the one
//! serialization to the bytes every reader serves.
//!
//! Parsing is strict: the body must be one JSON object with exactly the
//! fields `id`, `title`, `content` and `author`, each a string, each once.
//! Syntax errors are 400 ([`PostError::Malformed`]); anything that parses
//! but is not a valid post is 422 ([`PostError::Invalid`]) naming the field.
//! [`Post::to_body`] writes the fields in a fixed order with no whitespace,
//! so the same post always has the same bytes and so the same ETag.

use std::fmt;

use heavyread_sync::record::{valid_id, MAX_ID_LEN};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::ApiError;

/// A valid post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// 1..=128 characters of `A-Z a-z 0-9 . _ ~ -`; the key readers serve it under.
    pub id: String,
    /// Non-blank, bounded.
    pub title: String,
    /// Bounded; may be empty.
    pub content: String,
    /// Non-blank, bounded.
    pub author: String,
}

/// The bounds a post must respect (from [`crate::Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest `content`, in bytes.
    pub max_content_bytes: usize,
    /// Largest `title`, in characters.
    pub max_title_chars: usize,
    /// Largest `author`, in characters.
    pub max_author_chars: usize,
}

/// Why a body is not a post.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// Not JSON (400); the parser's message with line and column.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// JSON, but not a valid post (422).
    #[error("{message}")]
    Invalid {
        /// The field at fault, if any.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl PostError {
    fn field(field: &str, message: String) -> Self {
        PostError::Invalid {
            field: Some(field.to_owned()),
            message,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            PostError::Malformed(_) => 400,
            PostError::Invalid { .. } => 422,
        }
    }

    /// The field at fault, if any.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            PostError::Invalid { field, .. } => field.as_deref(),
            PostError::Malformed(_) => None,
        }
    }
}

impl From<PostError> for ApiError {
    fn from(e: PostError) -> Self {
        match e {
            PostError::Malformed(m) => ApiError::Malformed(m),
            PostError::Invalid { field, message } => ApiError::Invalid { field, message },
        }
    }
}

/// The fields in serialization order.
const FIELDS: [&str; 4] = ["id", "title", "content", "author"];
/// Unknown field names are echoed back, cut to this many characters.
const MAX_ECHOED_NAME: usize = 64;

impl Post {
    /// Parses and validates one JSON object.
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Post, PostError> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => PostError::Invalid {
                field: None,
                message: "body must be a JSON object with id, title, content and author".into(),
            },
            _ => PostError::Malformed(e.to_string()),
        })?;
        if let Some(problem) = raw.problem {
            return Err(problem);
        }
        let [id, title, content, author] = raw.fields;
        let missing = |name: &str| PostError::field(name, format!("missing field {name}"));
        let id = id.ok_or_else(|| missing("id"))?;
        let title = title.ok_or_else(|| missing("title"))?;
        let content = content.ok_or_else(|| missing("content"))?;
        let author = author.ok_or_else(|| missing("author"))?;
        if !valid_id(id.as_bytes()) {
            return Err(PostError::field(
                "id",
                format!("id must be 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ ~ -"),
            ));
        }
        check_text("title", &title, limits.max_title_chars)?;
        check_text("author", &author, limits.max_author_chars)?;
        if content.len() > limits.max_content_bytes {
            return Err(PostError::field(
                "content",
                format!("content must be at most {} bytes", limits.max_content_bytes),
            ));
        }
        Ok(Post {
            id,
            title,
            content,
            author,
        })
    }

    /// The body readers serve: `{"id":..,"title":..,"content":..,"author":..}`,
    /// compact, fields in that order, strings escaped as `serde_json` does.
    pub fn to_body(&self) -> Vec<u8> {
        let len = self.id.len() + self.title.len() + self.content.len() + self.author.len();
        let mut out = Vec::with_capacity(len + 48);
        for (i, (name, value)) in FIELDS
            .iter()
            .zip([&self.id, &self.title, &self.content, &self.author])
            .enumerate()
        {
            out.push(if i == 0 { b'{' } else { b',' });
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            write_json_string(&mut out, value);
        }
        out.push(b'}');
        out
    }
}

fn check_text(name: &str, value: &str, max_chars: usize) -> Result<(), PostError> {
    if value.trim().is_empty() {
        return Err(PostError::field(name, format!("{name} must not be empty")));
    }
    // Count lazily: stop as soon as the limit is passed.
    if value.chars().nth(max_chars).is_some() {
        return Err(PostError::field(
            name,
            format!("{name} must be at most {max_chars} characters"),
        ));
    }
    Ok(())
}

/// Appends `s` as a JSON string: `"` and `\` escaped, control characters as
/// `\b \f \n \r \t` or `\u00XX`, everything else as is (the same bytes as serde_json).
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The object as read, before validation. Semantic problems are recorded,
/// not raised, so the whole body is still parsed and a syntax error later
/// in it wins (400 over 422).
#[derive(Default)]
struct Raw {
    fields: [Option<String>; 4],
    problem: Option<PostError>,
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with id, title, content and author")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut raw = Raw::default();
        while let Some(key) = map.next_key::<String>()? {
            let Some(slot) = FIELDS.iter().position(|f| *f == key) else {
                map.next_value::<IgnoredAny>()?;
                if raw.problem.is_none() {
                    let shown: String = key.chars().take(MAX_ECHOED_NAME).collect();
                    raw.problem = Some(PostError::field(
                        &shown,
                        format!("unknown field {shown:?}; expected id, title, content, author"),
                    ));
                }
                continue;
            };
            let value: Value = map.next_value()?;
            if raw.problem.is_some() {
                continue;
            }
            let name = FIELDS[slot];
            match value {
                Value::Str(_) if raw.fields[slot].is_some() => {
                    raw.problem = Some(PostError::field(name, format!("duplicate field {name}")));
                }
                Value::Str(s) => raw.fields[slot] = Some(s),
                Value::Other(kind) => {
                    raw.problem = Some(PostError::field(
                        name,
                        format!("{name} must be a string, not {kind}"),
                    ));
                }
            }
        }
        Ok(raw)
    }
}

/// A field value: a string, or the kind of whatever else it was (consumed).
enum Value {
    Str(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Other("a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_content_bytes: 100,
        max_title_chars: 10,
        max_author_chars: 8,
    };

    fn parse(s: &str) -> Result<Post, PostError> {
        Post::parse(s.as_bytes(), &LIMITS)
    }

    fn invalid(s: &str) -> (String, String) {
        match parse(s) {
            Err(PostError::Invalid { field, message }) => (field.unwrap_or_default(), message),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn a_valid_post_serializes_in_field_order() {
        let p = parse(r#"{"author":"ann","content":"hi","title":"T","id":"p-1"}"#).unwrap();
        assert_eq!(
            p.to_body(),
            br#"{"id":"p-1","title":"T","content":"hi","author":"ann"}"#
        );
    }

    #[test]
    fn serialization_matches_serde_json_escaping() {
        let nasty = "q\"b\\s/\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}é😀\u{2028}";
        let p = Post {
            id: "x".into(),
            title: nasty.into(),
            content: nasty.repeat(3),
            author: "a".into(),
        };
        let expected = serde_json::to_vec(&serde_json::json!({
            "id": "x", "title": nasty, "content": nasty.repeat(3), "author": "a"
        }))
        .unwrap();
        // json! orders keys alphabetically; compare as values, then check the order by hand.
        let ours = p.to_body();
        let a: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&expected).unwrap();
        assert_eq!(a, b);
        let mut manual = b"{\"id\":".to_vec();
        for (k, v) in [
            ("", "x"),
            ("title", nasty),
            ("content", &nasty.repeat(3)),
            ("author", "a"),
        ] {
            if !k.is_empty() {
                manual.extend_from_slice(format!(",\"{k}\":").as_bytes());
            }
            manual.extend_from_slice(&serde_json::to_vec(v).unwrap());
        }
        manual.push(b'}');
        assert_eq!(ours, manual);
        // And it round-trips through our own parser to the same post.
        let limits = Limits {
            max_content_bytes: 1000,
            ..LIMITS
        };
        let limits = Limits {
            max_title_chars: 100,
            ..limits
        };
        assert_eq!(Post::parse(&ours, &limits).unwrap(), p);
    }

    #[test]
    fn syntax_errors_are_malformed() {
        for s in [
            "",
            "{",
            "{\"id\":}",
            "nope",
            "{\"id\":\"a\"} x",
            "{\"id\":\"a\",}",
        ] {
            assert!(matches!(parse(s), Err(PostError::Malformed(_))), "{s:?}");
        }
        // A syntax error after a semantic one still wins.
        assert!(matches!(
            parse(r#"{"x":1, "id": }"#),
            Err(PostError::Malformed(_))
        ));
    }

    #[test]
    fn non_objects_are_invalid() {
        for s in ["[]", "\"x\"", "1", "null"] {
            let (field, msg) = invalid(s);
            assert_eq!(field, "");
            assert!(msg.contains("JSON object"), "{msg}");
        }
    }

    #[test]
    fn field_errors_name_the_field() {
        let ok = r#""title":"T","content":"c","author":"a""#;
        let cases = [
            (
                format!(r#"{{"id":"a b",{ok}}}"#),
                "id",
                "id must be 1 to 128 characters",
            ),
            (format!(r#"{{"id":"",{ok}}}"#), "id", "id must be 1 to 128"),
            (
                format!(r#"{{"id":"{}",{ok}}}"#, "x".repeat(129)),
                "id",
                "id must be 1 to 128",
            ),
            (format!(r#"{{{ok}}}"#), "id", "missing field id"),
            (
                format!(r#"{{"id":1,{ok}}}"#),
                "id",
                "id must be a string, not a number",
            ),
            (
                format!(r#"{{"id":"a",{ok},"extra":[1]}}"#),
                "extra",
                "unknown field \"extra\"",
            ),
            (
                format!(r#"{{"id":"a","id":"b",{ok}}}"#),
                "id",
                "duplicate field id",
            ),
            (
                r#"{"id":"a","title":"  ","content":"c","author":"a"}"#.into(),
                "title",
                "title must not be empty",
            ),
            (
                r#"{"id":"a","title":"12345678901","content":"c","author":"a"}"#.into(),
                "title",
                "title must be at most 10 characters",
            ),
            (
                r#"{"id":"a","title":"t","content":"c","author":""}"#.into(),
                "author",
                "author must not be empty",
            ),
            (
                r#"{"id":"a","title":"t","content":"c","author":null}"#.into(),
                "author",
                "author must be a string, not null",
            ),
            (
                format!(
                    r#"{{"id":"a","title":"t","content":"{}","author":"a"}}"#,
                    "c".repeat(101)
                ),
                "content",
                "content must be at most 100 bytes",
            ),
            (
                r#"{"id":"a","title":"t","author":"a"}"#.into(),
                "content",
                "missing field content",
            ),
        ];
        for (body, field, msg) in cases {
            let (f, m) = invalid(&body);
            assert_eq!(f, field, "{body}");
            assert!(m.starts_with(msg), "{body}: {m}");
        }
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        // Ten two-byte characters fit a ten-character title.
        let t = "é".repeat(10);
        let body = format!(r#"{{"id":"a","title":"{t}","content":"","author":"a"}}"#);
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn unknown_field_names_are_cut() {
        let name = "n".repeat(500);
        let (f, _) = invalid(&format!(r#"{{"{name}":1}}"#));
        assert_eq!(f.len(), MAX_ECHOED_NAME);
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        for field in ["x", "title"] {
            let deep = format!(
                r#"{{"{field}":{}{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            );
            assert!(parse(&deep).is_err());
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep).is_err());
    }
}
