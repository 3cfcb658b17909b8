//! Where the `heavyread-reader` and `heavyread-writer` binaries are.
//!
//! Cargo hands a test the paths of its own package's binaries only, so the
//! suite looks for them in the target directory it runs from
//! (`target/<profile>/`, next to `deps/` where the test executable is). When
//! a binary is missing or older than its sources, the suite builds it with
//! `cargo build -p <package>`, one package per invocation like the Makefile,
//! so the reader never gets the writer's features (and tokio) unified in.
//! `make test` builds both before any test runs (`cargo nextest run
//! --workspace` builds every binary of the workspace), so there this is a
//! check of a few file times. `HEAVYREAD_READER_BIN` and
//! `HEAVYREAD_WRITER_BIN` point the suite at other binaries (for example
//! release builds) and skip all of this.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The reader binary, built first if it is missing or stale.
pub fn reader() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        locate(
            "HEAVYREAD_READER_BIN",
            "heavyread-reader",
            &["sync", "reader"],
        )
    })
}

/// The writer binary, built first if it is missing or stale.
pub fn writer() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        locate(
            "HEAVYREAD_WRITER_BIN",
            "heavyread-writer",
            &["sync", "writer"],
        )
    })
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("systest/ sits in the workspace")
        .to_owned()
}

/// `target/<profile>`: the directory of the running test executable, or
/// its parent when that is `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("the executable is in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    }
}

/// The target directory (the parent of [`profile_dir`]).
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().unwrap_or(&profile).to_owned()
}

fn locate(var: &str, name: &str, crates: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{var}={} is not a file", p.display());
        return p;
    }
    let bin = profile_dir().join(name);
    let root = workspace_root();
    let sources_changed = newest_source(&root, crates);
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_none_or(|b| b < sources_changed) {
        build(&root, name);
    }
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// The latest modification time of the crates' sources and manifests and
/// of the workspace manifest and lock file.
fn newest_source(root: &Path, crates: &[&str]) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut visit = |p: &Path| {
        if let Ok(t) = std::fs::metadata(p).and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    };
    visit(&root.join("Cargo.toml"));
    visit(&root.join("Cargo.lock"));
    for c in crates {
        visit(&root.join(c).join("Cargo.toml"));
        let mut dirs = vec![root.join(c).join("src")];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    visit(&p);
                }
            }
        }
    }
    newest
}

/// `cargo build -p <package>` into this target directory and profile.
/// Concurrent test processes may all ask; cargo's lock on the target
/// directory makes the later ones wait and then find nothing to do.
fn build(root: &Path, package: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = profile_dir();
    let profile_name = profile
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .arg("-p")
        .arg(package)
        .arg("--target-dir")
        .arg(target_dir());
    match profile_name.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.arg("--profile").arg(other);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running cargo to build {package}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
