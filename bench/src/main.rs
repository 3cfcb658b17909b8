//! `heavyread-bench`: the benchmark tools, one subcommand each.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "heavyread-bench", about = "heavyread benchmark tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Publish-to-applied latency of the sync library at fixed write rates.
    SyncLatency {
        /// Writes per second; repeat for several runs.
        #[arg(long = "rate", default_values_t = [1_000u64, 10_000])]
        rates: Vec<u64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Distinct ids written.
        #[arg(long, default_value_t = 10_000)]
        ids: u64,
    },
    /// Cold bootstrap time of a subscriber over a large hash.
    SyncBootstrap {
        /// Entries seeded into Redis.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Mean JSON body size in bytes.
        #[arg(long, default_value_t = 350)]
        body_len: usize,
    },
}

#[allow(clippy::print_stdout)] // A command-line tool: its results go to stdout.
#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::SyncLatency { rates, secs, ids } => {
            println!("| writes/s | samples | p50 µs | p99 µs | p99.9 µs | max µs |");
            println!("|---:|---:|---:|---:|---:|---:|");
            for rate in rates {
                let l = heavyread_bench::sync::latency(rate, secs, ids).await?;
                println!(
                    "| {} | {} | {} | {} | {} | {} |",
                    l.rate, l.samples, l.p50, l.p99, l.p999, l.max
                );
            }
        }
        Cmd::SyncBootstrap { entries, body_len } => {
            let b = heavyread_bench::sync::bootstrap(entries, body_len).await?;
            println!(
                "entries {} | body bytes {} (mean {}) | seeded in {:.2?} ({:.0}/s) | bootstrap {:.2?} | store accounts {} bytes",
                b.entries,
                b.body_bytes,
                b.body_bytes / b.entries.max(1),
                b.seed,
                b.entries as f64 / b.seed.as_secs_f64(),
                b.bootstrap,
                b.store_bytes
            );
        }
    }
    Ok(())
}
