//! The built-in lab world (design.md section 3): the zones of `zones/` and `zones/lab.toml`,
//! compiled into the binary so `gslbd` with no arguments works from any directory.

use std::io;
use std::path::Path;

use crate::zone::reader::ZoneFs;

pub const CONFIG_NAME: &str = "zones/lab.toml";
pub const CONFIG: &str = include_str!("../zones/lab.toml");

/// Every file under `zones/` the lab config can name, by its path relative to `zones/`.
pub const FILES: &[(&str, &str)] = &[
    ("root.zone", include_str!("../zones/root.zone")),
    ("com.zone", include_str!("../zones/com.zone")),
    ("net.zone", include_str!("../zones/net.zone")),
    (
        "yourcompany.com.zone",
        include_str!("../zones/yourcompany.com.zone"),
    ),
    (
        "yourcompany.com.regions.zone",
        include_str!("../zones/yourcompany.com.regions.zone"),
    ),
    (
        "dev.yourcompany.com.zone",
        include_str!("../zones/dev.yourcompany.com.zone"),
    ),
    ("cdn.com.zone", include_str!("../zones/cdn.com.zone")),
    (
        "2.0.192.in-addr.arpa.zone",
        include_str!("../zones/2.0.192.in-addr.arpa.zone"),
    ),
];

/// Serves `zones/<file>` from the copies compiled in.
pub struct EmbeddedFs;

impl ZoneFs for EmbeddedFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        let rel = path.strip_prefix("zones").unwrap_or(path);
        FILES
            .iter()
            .find(|(name, _)| Path::new(name) == rel)
            .map(|(_, text)| text.to_string())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "not a file of the built-in lab")
            })
    }
}
