//! The built-in lab world (README.md, "The lab world"): the zones of `zones/`, the geo data of
//! `geo/` and `zones/lab.toml`, compiled into the binary so `gslbd` with no arguments works from
//! any directory.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::zone::reader::ZoneFs;

pub const CONFIG_NAME: &str = "zones/lab.toml";
pub const CONFIG: &str = include_str!("../zones/lab.toml");

/// Every file the lab config can name, by its path relative to the project's top folder.
pub const FILES: &[(&str, &str)] = &[
    ("zones/root.zone", include_str!("../zones/root.zone")),
    ("zones/lab.hints", include_str!("../zones/lab.hints")),
    ("zones/com.zone", include_str!("../zones/com.zone")),
    ("zones/net.zone", include_str!("../zones/net.zone")),
    (
        "zones/yourcompany.com.zone",
        include_str!("../zones/yourcompany.com.zone"),
    ),
    (
        "zones/yourcompany.com.regions.zone",
        include_str!("../zones/yourcompany.com.regions.zone"),
    ),
    (
        "zones/dev.yourcompany.com.zone",
        include_str!("../zones/dev.yourcompany.com.zone"),
    ),
    ("zones/cdn.com.zone", include_str!("../zones/cdn.com.zone")),
    (
        "zones/2.0.192.in-addr.arpa.zone",
        include_str!("../zones/2.0.192.in-addr.arpa.zone"),
    ),
    ("geo/lab.csv", include_str!("../geo/lab.csv")),
    (
        "geo/lab-overrides.csv",
        include_str!("../geo/lab-overrides.csv"),
    ),
    (
        "geo/asn-carriers.csv",
        include_str!("../geo/asn-carriers.csv"),
    ),
];

/// Serves the copies compiled in; `path` is as the config names it, joined to `zones/`.
pub struct EmbeddedFs;

/// `zones/../geo/x` -> `geo/x`, without touching the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

impl ZoneFs for EmbeddedFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        let rel = normalize(path);
        FILES
            .iter()
            .find(|(name, _)| Path::new(name) == rel)
            .map(|(_, text)| text.to_string())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "not a file of the built-in lab")
            })
    }
}
