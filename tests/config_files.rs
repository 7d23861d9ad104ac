//! Every configuration the project ships builds with the same builder `serve` uses.

use gslbd::config::Source;
use gslbd::snapshot::Snapshot;

#[test]
fn every_shipped_config_builds() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut checked = 0;
    for dir in [
        "deploy",
        "zones",
        "tests/data/battery",
        "tests/data/differential",
    ] {
        let Ok(entries) = std::fs::read_dir(format!("{root}/{dir}")) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                Snapshot::build(&Source::file(&p))
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "found the shipped configs");
    let lab = Snapshot::build(&Source::lab()).expect("the lab builds");
    assert_eq!(lab.zones.len(), 7);
}
