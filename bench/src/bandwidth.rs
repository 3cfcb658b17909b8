//! `bandwidth`: bytes on the wire for a fixed number of requests, with a
//! given share of revalidations (`If-None-Match` with the current ETag, so
//! a 304 without a body), counted exactly at the socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::client::{get, Conn};
use crate::data::Rng;

/// Settings of a bandwidth run.
#[derive(Debug, Clone)]
pub struct BandwidthOptions {
    /// Server.
    pub addr: SocketAddr,
    /// Requests in all.
    pub requests: u64,
    /// Share of requests that revalidate, 0..=1.
    pub share: f64,
    /// Ids `post-0 .. post-(ids-1)`.
    pub ids: u64,
    /// Concurrent keep-alive connections.
    pub connections: usize,
}

/// Bytes counted for one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BandwidthResult {
    /// Requests sent.
    pub requests: u64,
    /// Share asked for.
    pub share: f64,
    /// Answers 304.
    pub not_modified: u64,
    /// Answers 200.
    pub ok: u64,
    /// Other answers.
    pub other: u64,
    /// Request bytes written.
    pub bytes_sent: u64,
    /// Response bytes read.
    pub bytes_received: u64,
    /// Bytes of one 304 answer (head only).
    pub not_modified_bytes: u64,
    /// Bytes of one 200 answer of the same post (head and body).
    pub ok_bytes: u64,
}

/// `id "etag"` lines, as written by `export`.
pub fn read_etags(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(parse_etags(&text))
}

/// Parses `id "etag"` lines; malformed lines are skipped.
pub fn parse_etags(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (id, tag) = l.trim().split_once(' ')?;
            let tag = tag.trim();
            (tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"'))
                .then(|| (id.to_owned(), tag.to_owned()))
        })
        .collect()
}

/// Sends `o.requests` requests and counts the bytes.
pub async fn bandwidth(
    o: &BandwidthOptions,
    etags: &HashMap<String, String>,
) -> Result<BandwidthResult> {
    if o.connections == 0 || o.ids == 0 {
        bail!("--connections and --ids must be at least 1");
    }
    // The size of one 200 and one 304 of the same post.
    let mut probe = Conn::connect(o.addr).await?;
    let ok = probe.exchange(&get("/post?id=post-0", &[]), false).await?;
    let tag = ok.etag.clone().context("no ETag on /post?id=post-0")?;
    let nm = probe
        .exchange(&get("/post?id=post-0", &[("If-None-Match", &tag)]), false)
        .await?;
    if ok.status != 200 || nm.status != 304 {
        bail!(
            "expected 200 then 304 for post-0, got {} and {}",
            ok.status,
            nm.status
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..o.connections {
        let o = o.clone();
        let etags = etags.clone();
        let n = o.requests / o.connections as u64
            + u64::from((c as u64) < o.requests % o.connections as u64);
        tasks.spawn(async move {
            let mut conn = Conn::connect(o.addr).await?;
            let mut rng = Rng::new(c as u64 + 1);
            let (mut nm, mut ok, mut other) = (0u64, 0u64, 0u64);
            for _ in 0..n {
                let id = format!("post-{}", rng.next_u64() % o.ids);
                let revalidate = (rng.next_u64() % 1_000_000) as f64 / 1e6 < o.share;
                let req = match etags.get(&id) {
                    Some(tag) if revalidate => {
                        get(&format!("/post?id={id}"), &[("If-None-Match", tag)])
                    }
                    _ => get(&format!("/post?id={id}"), &[]),
                };
                match conn.exchange(&req, false).await?.status {
                    304 => nm += 1,
                    200 => ok += 1,
                    _ => other += 1,
                }
            }
            anyhow::Ok((nm, ok, other, conn.sent, conn.received))
        });
    }
    let mut r = BandwidthResult {
        requests: o.requests,
        share: o.share,
        not_modified_bytes: nm.wire_len() as u64,
        ok_bytes: ok.wire_len() as u64,
        ..BandwidthResult::default()
    };
    while let Some(t) = tasks.join_next().await {
        let (nm, ok, other, sent, received) = t??;
        r.not_modified += nm;
        r.ok += ok;
        r.other += other;
        r.bytes_sent += sent;
        r.bytes_received += received;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_lines_are_parsed() {
        let m = parse_etags("post-1 \"abc\"\nbad line\npost-2 \"de\"\n\npost-3 nope\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["post-1"], "\"abc\"");
    }
}
