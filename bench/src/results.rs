//! Result files: every step writes one JSON file into the results folder,
//! and `report` reads them back. A missing file is a step that did not run.

use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Writes `value` as pretty JSON to `path` (creating the folder).
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(value)?;
    std::fs::write(path, json).with_context(|| format!("write {}", path.display()))
}

/// Writes `value` to `path` if a path was given.
pub fn write_opt<T: Serialize>(path: Option<&Path>, value: &T) -> Result<()> {
    path.map_or(Ok(()), |p| write(p, value))
}

/// Reads a result file; `Ok(None)` if it does not exist.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}
