//! Every configuration the project ships builds with the same builder `serve` uses: the lab and
//! the test data where they are, the deploy/ examples as their comments say to install them.

use std::path::Path;

use gslbd::config::Source;
use gslbd::snapshot::Snapshot;

#[test]
fn every_shipped_config_builds() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut checked = 0;
    for dir in ["zones", "tests/data/battery", "tests/data/differential"] {
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
    assert!(checked >= 3, "found the shipped configs");
    let lab = Snapshot::build(&Source::lab()).expect("the lab builds");
    assert_eq!(lab.zones.len(), 7);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Each deploy/*.toml installed the way its comment and deploy/gslbd.service say (as
/// /etc/gslbd/gslbd.toml, with deploy/zones/ as zones/ and geo/ beside it; here a temporary
/// folder stands for /etc/gslbd) passes `gslbd check`. Only `check`: a deploy config's addresses
/// are the machine's real ones, never served by a test.
#[test]
fn deploy_configs_check_as_installed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/gslbd.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/gslbd serve --config /etc/gslbd/gslbd.toml"),
        "the install layout below is the unit's:\n{unit}"
    );
    let mut checked = Vec::new();
    for e in std::fs::read_dir(root.join("deploy")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        // A fleet node's file needs the cluster feature (etcd-client, built with protoc).
        if !cfg!(feature = "cluster") && p.ends_with("cluster-node.toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        // The comment says how to install it, naming the unit's path or another place.
        assert!(
            text.lines()
                .take_while(|l| l.starts_with('#'))
                .any(|l| l.contains("/etc/gslbd/gslbd.toml")),
            "{}: its opening comment should say where it goes",
            p.display()
        );
        let etc = tempfile::tempdir().unwrap();
        std::fs::copy(&p, etc.path().join("gslbd.toml")).unwrap();
        copy_dir(&root.join("deploy/zones"), &etc.path().join("zones"));
        copy_dir(&root.join("geo"), &etc.path().join("geo"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gslbd"))
            .arg("check")
            .arg("--config")
            .arg(etc.path().join("gslbd.toml"))
            .output()
            .expect("run gslbd check");
        assert!(
            out.status.success(),
            "{} installed as gslbd.toml:\n{}{}",
            p.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked.push(e.file_name().to_string_lossy().into_owned());
    }
    checked.sort();
    let mut want = vec!["gslb.toml", "gslbd.toml", "resolver.toml"];
    if cfg!(feature = "cluster") {
        want.insert(0, "cluster-node.toml");
    }
    assert_eq!(checked, want);
}

/// The node file inside deploy/kubernetes/gslbd.yaml's ConfigMap (a YAML block scalar) passes
/// `gslbd check` as the pod would load it.
#[cfg(feature = "cluster")]
#[test]
fn the_kubernetes_configmap_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(root.join("deploy/kubernetes/gslbd.yaml")).unwrap();
    let start = yaml
        .find("  gslbd.toml: |\n")
        .expect("the ConfigMap's gslbd.toml")
        + 16;
    let toml: String = yaml[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    assert!(toml.contains("[cluster]"), "{toml}");
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("gslbd.toml"), &toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gslbd"))
        .args(["check", "--config"])
        .arg(etc.path().join("gslbd.toml"))
        .output()
        .expect("run gslbd check");
    assert!(
        out.status.success(),
        "{toml}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
