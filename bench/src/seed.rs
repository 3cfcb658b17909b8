//! `seed`: loads N deterministic posts through the writer's `POST /bulk`,
//! in NDJSON batches over a few keep-alive connections, with a progress bar.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::client::{post_head, Conn};
use crate::data::post_json;

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// The writer.
    pub writer: SocketAddr,
    /// Posts to write.
    pub posts: u64,
    /// Number of the first post (ids are `{id_prefix}{n}`).
    pub start: u64,
    /// Mean JSON body size in bytes.
    pub body_len: usize,
    /// Posts per `/bulk` request.
    pub batch: u64,
    /// Concurrent `/bulk` requests.
    pub connections: usize,
    /// Id prefix.
    pub id_prefix: String,
    /// Bearer token of the writer, if it wants one.
    pub token: Option<String>,
    /// Draw a progress bar on stderr (hidden anyway when it is not a terminal).
    pub progress: bool,
}

/// What a seed run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SeedResult {
    /// Posts the writer applied.
    pub posts: u64,
    /// Sum of the JSON bodies sent.
    pub body_bytes: u64,
    /// Wall time.
    pub secs: f64,
    /// `posts / secs`.
    pub posts_per_sec: f64,
    /// Highest version the writer reported.
    pub last_version: u64,
}

/// The NDJSON body of posts `from..to`, and the bytes of its bodies.
pub fn ndjson(prefix: &str, from: u64, to: u64, body_len: usize) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(((to - from) as usize) * (body_len + 40));
    let mut bodies = 0u64;
    for n in from..to {
        let b = post_json(&format!("{prefix}{n}"), n, body_len);
        bodies += b.len() as u64;
        out.extend_from_slice(&b);
        out.push(b'\n');
    }
    (out, bodies)
}

async fn bulk(
    conn: &mut Conn,
    body: &[u8],
    token: Option<&str>,
    lines: u64,
) -> Result<serde_json::Value> {
    let head = post_head("/bulk", "application/x-ndjson", body.len(), token);
    conn.send(&head).await?;
    conn.send(body).await?;
    let resp = conn.read_response(true).await?;
    let report: serde_json::Value = serde_json::from_slice(&resp.body)
        .with_context(|| format!("/bulk answered {} with a non-JSON body", resp.status))?;
    if resp.status != 200 {
        bail!("/bulk answered {}: {report}", resp.status);
    }
    let applied = report["applied"].as_u64().unwrap_or(0);
    let rejected = report["rejected"].as_u64().unwrap_or(0);
    if applied != lines || rejected != 0 {
        bail!("/bulk applied {applied} of {lines} lines ({rejected} rejected): {report}");
    }
    Ok(report)
}

/// Seeds `opts.posts` posts and returns what it did.
pub async fn seed(opts: &SeedOptions) -> Result<SeedResult> {
    if opts.batch == 0 || opts.connections == 0 {
        bail!("--batch and --connections must be at least 1");
    }
    let bar = ProgressBar::with_draw_target(
        Some(opts.posts),
        if opts.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "seed {bar:40.cyan/blue} {human_pos}/{human_len} posts  {per_sec}  eta {eta}",
        )?
        .progress_chars("=> "),
    );
    let batches = opts.posts.div_ceil(opts.batch);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.connections.min(batches.max(1) as usize) {
        let (opts, next, bar) = (opts.clone(), next.clone(), bar.clone());
        tasks.spawn(async move {
            let mut conn = Conn::connect(opts.writer).await?;
            let (mut bytes, mut last_version) = (0u64, 0u64);
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let from = opts.start + b * opts.batch;
                let to = (from + opts.batch).min(opts.start + opts.posts);
                let (body, body_bytes) = ndjson(&opts.id_prefix, from, to, opts.body_len);
                let report = bulk(&mut conn, &body, opts.token.as_deref(), to - from).await?;
                last_version = last_version.max(report["last_version"].as_u64().unwrap_or(0));
                bytes += body_bytes;
                bar.inc(to - from);
            }
            anyhow::Ok((bytes, last_version))
        });
    }
    let mut result = SeedResult {
        posts: opts.posts,
        ..SeedResult::default()
    };
    while let Some(r) = tasks.join_next().await {
        let (bytes, v) = r??;
        result.body_bytes += bytes;
        result.last_version = result.last_version.max(v);
    }
    bar.finish_and_clear();
    result.secs = started.elapsed().as_secs_f64();
    result.posts_per_sec = opts.posts as f64 / result.secs.max(1e-9);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_has_one_post_a_line() {
        let (body, bytes) = ndjson("p-", 5, 8, 200);
        let lines: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(bytes as usize, body.len() - 3);
        assert!(lines[0].starts_with(br#"{"id":"p-5","#));
    }
}
