//! The fuzz corpus replayed on stable (issue 13, fuzzing in the tree): every file under
//! `fuzz/corpus/<target>/` (the checked-in seeds, the inputs the fuzzers kept, and every crash
//! found, which is added there) goes through the very function its cargo-fuzz target runs
//! (`fuzz/targets.rs`), so a fixed crash stays fixed without a nightly toolchain.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no seeds", dir.display());
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        if let Err(e) = outcome {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {msg}", f.display());
        }
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn query() {
    replay("query", targets::query);
}

#[test]
fn fast_path() {
    replay("fast_path", targets::fast_path);
}

#[test]
fn zone() {
    replay("zone", targets::zone);
}

#[test]
fn config() {
    replay("config", targets::config);
}

#[test]
fn geo_csv() {
    replay("geo_csv", targets::geo_csv);
}

#[test]
fn resolver_reply() {
    replay("resolver_reply", targets::resolver_reply);
}

#[test]
fn http() {
    replay("http", targets::http);
}
