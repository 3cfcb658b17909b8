//! `export`: writes the bodies Redis holds as static files (for the nginx
//! baseline, so it serves exactly the bytes the readers serve) and a list of
//! `id "etag"` lines (for the revalidation runs).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use heavyread_sync::record::etag_hex;
use heavyread_sync::{Keys, Op, RecordRef};
use serde::{Deserialize, Serialize};

/// What an export wrote.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportResult {
    /// Posts written.
    pub posts: u64,
    /// Sum of their bodies.
    pub body_bytes: u64,
}

/// Writes `dir/posts/<id>.json` for every post of the deployment and
/// `dir/etags.txt`.
pub fn export(redis_url: &str, prefix: &str, dir: &Path) -> Result<ExportResult> {
    let keys = Keys::new(prefix)?;
    let client = redis::Client::open(redis_url)?;
    let mut con = client.get_connection().context("connect to Redis")?;
    let posts_dir = dir.join("posts");
    std::fs::create_dir_all(&posts_dir)
        .with_context(|| format!("create {}", posts_dir.display()))?;
    let mut etags = std::io::BufWriter::new(std::fs::File::create(dir.join("etags.txt"))?);
    let mut out = ExportResult::default();
    let mut cursor: u64 = 0;
    loop {
        let (next, items): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
            .arg(&keys.posts)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)?;
        for (id, stored) in items {
            let r = RecordRef::decode(&stored)
                .map_err(|e| anyhow::anyhow!("record of {id:?} is malformed: {e}"))?;
            if r.op != Op::Put {
                continue;
            }
            std::fs::write(posts_dir.join(format!("{}.json", r.id)), r.body)?;
            let hex = etag_hex(&r.etag);
            writeln!(etags, "{} \"{}\"", r.id, String::from_utf8_lossy(&hex))?;
            out.posts += 1;
            out.body_bytes += r.body.len() as u64;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    etags.flush()?;
    Ok(out)
}
