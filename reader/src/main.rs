//! The `heavyread-reader` binary: configuration, logging, then [`heavyread_reader::run`].

use std::process::ExitCode;

use clap::Parser;
use heavyread_reader::{Config, LogFormat};
use tracing::error;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match heavyread_reader::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "heavyread-reader failed");
            ExitCode::FAILURE
        }
    }
}
