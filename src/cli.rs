//! The command line. `gslbd` alone serves the built-in lab world; `serve --config` serves real
//! data; `check --config` runs the same snapshot builder as serve and reload and reports every
//! problem (exit status 1); `explain` shows a GSLB decision hop by hop; `geo build` compiles the
//! project's geo CSV into mmdb files.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::{info, warn};

use hickory_proto::rr::{Name, RecordType};

use crate::config::{Origin, Source};
use crate::gslb::explain::ClientSource;
use crate::server::Server;
use crate::snapshot::Snapshot;

#[derive(Parser, Debug)]
#[command(
    name = "gslbd",
    version,
    about = "Authoritative DNS + GSLB + HTTPDNS + resolver. With no arguments: the lab world."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve DNS (the lab world when no --config is given). SIGHUP reloads.
    Serve {
        /// The configuration file (TOML); without it, the built-in lab world.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Use this port for every listener address instead of the configured ones (0 = pick one).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Load and check a configuration and its zones exactly as serve would; print every problem.
    Check {
        /// The configuration file (TOML); without it, the built-in lab world.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show how the GSLB answers NAME for a client: every hop, the geo result, region and why.
    Explain {
        /// The name to answer, e.g. object.yourcompany.com
        name: String,
        /// Record type.
        #[arg(long = "type", short = 't', default_value = "A")]
        qtype: String,
        /// The client's address, as if the query came from it.
        #[arg(long, conflicts_with = "ecs")]
        client: Option<IpAddr>,
        /// The client subnet, as if the query carried it in ECS (e.g. 198.51.100.0/24).
        #[arg(long)]
        ecs: Option<String>,
        /// Answer from this listener's zones (default: the first listener).
        #[arg(long)]
        listener: Option<String>,
        /// The configuration file (TOML); without it, the built-in lab world.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON (the structure the HTTP side serves) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resolve NAME iteratively from the root hints, like `dig +trace` with --trace. With the lab
    /// (no --config) the lab's nameservers are started in-process on a free port and walked.
    Resolve {
        /// The name, e.g. object.yourcompany.com
        name: String,
        /// Record type.
        #[arg(default_value = "A")]
        qtype: String,
        /// Print every step: servers asked, referrals and answers, cache hits.
        #[arg(long)]
        trace: bool,
        /// Resolve as this resolver listener (its source address and cache; default: the first).
        #[arg(long)]
        resolver: Option<String>,
        /// The configuration file (TOML); without it, the built-in lab world.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON (what `GET /trace` serves).
        #[arg(long)]
        json: bool,
    },
    /// Control a running server: status, stats, reload, health, drain/undrain, force,
    /// weight, overrides, audit, explain (through its HTTP admin endpoints).
    Ctl(crate::ctl::CtlArgs),
    /// Geo data tools.
    Geo {
        #[command(subcommand)]
        command: GeoCommand,
    },
    /// Zone tools.
    Zone {
        #[command(subcommand)]
        command: ZoneCommand,
    },
    /// DNSSEC keys: make one (BIND's file format), print the DS the parent zone needs.
    Dnssec {
        #[command(subcommand)]
        command: DnssecCommand,
    },
    /// A fleet sharing configuration through etcd (`[cluster]`; built with --features cluster).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (default: the `[cluster]` section of --config).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The key prefix (default: `[cluster] prefix`, else /gslbd/).
    #[arg(long)]
    prefix: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Check a configuration as `gslbd check` does, then write it and the files it names (zones,
    /// CSVs; not geo databases) to etcd as the next revision, which every node then serves.
    Push {
        /// The configuration to push.
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// The revision in etcd and every live node: the revision it serves, its state, its geo data;
    /// flags nodes that diverge (exit status 1 when any does).
    Status {
        /// A config with `[cluster]` (a node's file) for the endpoints.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        etcd: EtcdArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DnssecCommand {
    /// Make a key pair: writes K<zone>+<alg>+<tag>.key and .private (BIND's format, usable by
    /// dnssec-signzone and dnssec-dsfromkey) into --out and prints the DNSKEY record.
    Keygen {
        /// The zone the key signs, e.g. example.com
        #[arg(long)]
        zone: String,
        /// 13 (ECDSAP256SHA256) or 15 (ED25519).
        #[arg(long, default_value_t = 13)]
        algorithm: u8,
        /// A key-signing key (flags 257; pair it with a --zsk).
        #[arg(long, conflicts_with_all = ["zsk", "csk"])]
        ksk: bool,
        /// A zone-signing key (flags 256).
        #[arg(long, conflicts_with = "csk")]
        zsk: bool,
        /// A combined signing key (flags 257, signs everything): the default.
        #[arg(long)]
        csk: bool,
        /// Where the files go.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Print the DS record(s) for a key file (as `dnssec-dsfromkey -2` does), or for the KSK/CSK
    /// configured for --zone in --config.
    Ds {
        /// A BIND key (.key, .private or the K<zone>+<alg>+<tag> stem).
        #[arg(long, conflicts_with_all = ["config", "zone"])]
        key: Option<PathBuf>,
        /// The configuration file whose zone's keys to use (with --zone).
        #[arg(long, short, requires = "zone")]
        config: Option<PathBuf>,
        #[arg(long, requires = "config")]
        zone: Option<String>,
        /// Digest type: 2 (SHA-256) or 4 (SHA-384).
        #[arg(long, default_value_t = 2)]
        digest: u8,
    },
}

#[derive(Subcommand, Debug)]
pub enum ZoneCommand {
    /// Each zone's serial, records, transfer ACL, NOTIFY targets and IXFR journal (the serials
    /// it reaches back to, its size), as the configuration and the journals on disk give them.
    Status {
        /// The configuration file (TOML); without it, the built-in lab world.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GeoCommand {
    /// Compile a geo CSV (network,carrier,asn,organisation,country,province,city,latitude,longitude)
    /// into an ASN-schema and a City-schema mmdb: DIR/<stem>-asn.mmdb and DIR/<stem>-city.mmdb.
    Build {
        csv: PathBuf,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Look an address up in the configured geo data.
    Lookup {
        ip: IpAddr,
        /// The configuration file (TOML); without it, the built-in lab world.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn source(config: Option<PathBuf>, port: Option<u16>) -> Source {
    let origin = match config {
        // A file with `[cluster]` is a fleet node's own file: it serves the cluster's revision.
        Some(p) if is_cluster_node(&p) => Origin::Cluster(p),
        Some(p) => Origin::File(p),
        None => Origin::Lab,
    };
    Source {
        origin,
        port,
        udp_fast_path: None,
        udp_workers: None,
    }
}

fn is_cluster_node(p: &std::path::Path) -> bool {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|t| crate::config::parse(&t, p).ok())
        .is_some_and(|c| c.cluster.is_some())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // `gslbd explain --json | head`: output into a closed pipe ends a command quietly, as SIGPIPE
    // ends other Unix tools (Rust ignores SIGPIPE, so the write fails and println! panics). Not
    // for serve, whose sockets must see EPIPE as an error rather than die of it.
    if !matches!(cli.command, None | Some(Command::Serve { .. })) {
        // SAFETY: setting a signal's disposition to the default before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command.unwrap_or(Command::Serve {
        config: None,
        port: None,
    }) {
        Command::Check { config } => check(source(config, None)),
        Command::Zone {
            command: ZoneCommand::Status { config },
        } => zone_status(source(config, None)),
        Command::Serve { config, port } => serve(source(config, port)),
        Command::Explain {
            name,
            qtype,
            client,
            ecs,
            listener,
            config,
            json,
        } => explain(
            source(config, None),
            &name,
            &qtype,
            client,
            ecs.as_deref(),
            listener.as_deref(),
            json,
        ),
        Command::Resolve {
            name,
            qtype,
            trace,
            resolver,
            config,
            json,
        } => resolve(
            source(config, None),
            &name,
            &qtype,
            trace,
            resolver.as_deref(),
            json,
        ),
        Command::Ctl(args) => crate::ctl::main(args),
        Command::Cluster { command } => cluster(command),
        Command::Dnssec { command } => dnssec(command),
        Command::Geo {
            command: GeoCommand::Build { csv, out },
        } => geo_build(&csv, &out),
        Command::Geo {
            command: GeoCommand::Lookup { ip, config },
        } => geo_lookup(source(config, None), ip),
    }
}

/// `gslbd dnssec keygen|ds`.
fn dnssec(command: DnssecCommand) -> ExitCode {
    use crate::dnssec::{Algorithm, Role, keys};
    let absolute = |z: &str| {
        let z = z.to_ascii_lowercase();
        if z.ends_with('.') { z } else { format!("{z}.") }
    };
    let result = match command {
        DnssecCommand::Keygen {
            zone,
            algorithm,
            ksk,
            zsk,
            csk: _,
            out,
        } => (|| {
            let alg = Algorithm::from_number(algorithm)?;
            let role = if ksk {
                Role::Ksk
            } else if zsk {
                Role::Zsk
            } else {
                Role::Csk
            };
            Name::from_ascii(&zone).map_err(|e| format!("zone \"{zone}\": {e}"))?;
            let (private, public) = keys::generate(alg)?;
            let (stem, dnskey) =
                keys::write_bind_pair(&out, &absolute(&zone), alg, role, &private, &public)?;
            eprintln!("wrote {0}.key and {0}.private", stem.display());
            println!("{dnskey}");
            Ok(())
        })(),
        DnssecCommand::Ds {
            key,
            config,
            zone,
            digest,
        } => (|| {
            let mut loaded = Vec::new();
            if let Some(k) = key {
                loaded.push(keys::load(&crate::zone::reader::DiskFs, &k, None)?);
            } else if let (Some(config), Some(zone)) = (config, zone) {
                let (cfg, fs, base) = source(Some(config), None)
                    .load()
                    .map_err(|e| e.to_string())?;
                let zc = cfg
                    .zones
                    .iter()
                    .find(|z| absolute(&z.name) == absolute(&zone))
                    .ok_or_else(|| format!("no [[zone]] {zone} in the configuration"))?;
                let dc = zc
                    .dnssec
                    .as_ref()
                    .ok_or_else(|| format!("zone {zone} has no dnssec settings"))?;
                let signer =
                    crate::dnssec::ZoneSigner::compile(&absolute(&zone), dc, &base, fs.as_ref())
                        .map_err(|e| e.join("\n"))?;
                loaded.extend(signer.keys.into_iter().filter(|k| k.role != Role::Zsk));
            } else {
                return Err("give --key FILE, or --config FILE --zone NAME".to_string());
            }
            for k in &loaded {
                let zone = k.zone.clone().ok_or_else(|| {
                    format!(
                        "{}: a PEM key names no zone: use --config and --zone",
                        k.file.display()
                    )
                })?;
                let owner = crate::zone::name::key_of(
                    &Name::from_ascii(&zone).map_err(|e| format!("{zone}: {e}"))?,
                );
                println!(
                    "{}",
                    keys::ds_text(&zone, &owner, &k.dnskey_rdata(), digest)?
                );
            }
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `a.b.c.d/n` or `x::/n` (a bare address is a full-length prefix).
fn parse_subnet(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("--ecs {s}: not an address/prefix"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("--ecs {s}: prefix must be 0 to {max}"))?,
        None => max,
    };
    Ok((ip, prefix))
}

fn explain(
    source: Source,
    name: &str,
    qtype: &str,
    client: Option<IpAddr>,
    ecs: Option<&str>,
    listener: Option<&str>,
    json: bool,
) -> ExitCode {
    let fail = |m: String| {
        eprintln!("gslbd explain: {m}");
        ExitCode::FAILURE
    };
    let qtype = match qtype.to_ascii_uppercase().parse::<RecordType>() {
        Ok(t) => t,
        Err(_) => return fail(format!("unknown record type {qtype}")),
    };
    let snap = match Snapshot::build(&source) {
        Ok(s) => s,
        Err(e) => return fail(format!("the configuration does not build:\n{e}")),
    };
    let li = match listener {
        None => 0,
        Some(l) => match snap.listeners.iter().position(|x| x.name == l) {
            Some(i) => i,
            None => return fail(format!("no listener named {l}")),
        },
    };
    let (addr, src) = match (client, ecs) {
        (_, Some(e)) => match parse_subnet(e) {
            Ok((ip, prefix)) => {
                // As the DNS path does: the ECS subnet, cut to /24 or /56.
                let subnet = crate::wire::ClientSubnet {
                    family: if ip.is_ipv4() { 1 } else { 2 },
                    source_prefix: prefix,
                    scope_prefix: 0,
                    addr: ip,
                };
                (
                    crate::query::client_addr(Some(&subnet), ip),
                    ClientSource::Ecs,
                )
            }
            Err(m) => return fail(m),
        },
        (Some(ip), None) => (crate::query::client_addr(None, ip), ClientSource::Given),
        (None, None) => return fail("give --client ADDRESS or --ecs SUBNET".into()),
    };
    match crate::lookup::explain(&snap, li, name, qtype, addr, src) {
        Ok(e) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&e).expect("explain serializes")
            );
            ExitCode::SUCCESS
        }
        Ok(e) => {
            print!("{}", crate::gslb::explain::render(&e));
            ExitCode::SUCCESS
        }
        Err(m) => fail(m),
    }
}

fn resolve(
    mut source: Source,
    name: &str,
    qtype: &str,
    trace: bool,
    resolver: Option<&str>,
    json: bool,
) -> ExitCode {
    let fail = |m: String| {
        eprintln!("gslbd resolve: {m}");
        ExitCode::FAILURE
    };
    let qtype = match qtype.to_ascii_uppercase().parse::<RecordType>() {
        Ok(t) => t,
        Err(_) => return fail(format!("unknown record type {qtype}")),
    };
    let qname = match hickory_proto::rr::Name::from_ascii(name) {
        Ok(mut n) => {
            n.set_fqdn(true);
            n
        }
        Err(e) => return fail(format!("bad name {name}: {e}")),
    };
    let snap = match Snapshot::build(&source) {
        Ok(s) => s,
        Err(e) => return fail(format!("the configuration does not build:\n{e}")),
    };
    let Some(settings) = snap.resolver.clone() else {
        return fail(format!("{} has no [resolver] section", source.describe()));
    };
    let li = match resolver {
        None if settings.listeners.is_empty() => None,
        None => Some(0),
        Some(r) => match settings.listeners.iter().position(|l| l.name == r) {
            Some(i) => Some(i),
            None => return fail(format!("no resolver listener named {r}")),
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        // "listen": the hierarchy is our own servers. Start them on a free port so this works
        // beside a running lab, and walk them there.
        let (resolvers, settings) = if settings.upstream_port.is_none() {
            source.port = Some(0);
            let server = match Server::bind(source).await {
                Ok(s) => s,
                Err(e) => return fail(format!("cannot start the nameservers to walk: {e}")),
            };
            let handle = server.handle();
            tokio::spawn(server.run(std::future::pending()));
            let settings = handle.snapshot().resolver.clone().unwrap_or(settings);
            (handle.resolvers().clone(), settings)
        } else {
            (
                std::sync::Arc::new(crate::resolver::Resolvers::default()),
                settings,
            )
        };
        // A config with no resolver listener still resolves, from the system's source address.
        let fallback = crate::resolver::ResolverListener {
            name: "cli".into(),
            addresses: Vec::new(),
            source: Vec::new(),
            allow: Vec::new(),
            allow_snoop: Vec::new(),
            udp: false,
            tcp: false,
        };
        let listener = li.map_or(&fallback, |i| &settings.listeners[i]);
        let instance = resolvers.instance(&listener.name, &settings);
        let env = crate::resolver::Env {
            settings: &settings,
            listener,
            instance: &instance,
            port: resolvers.upstream_port(&settings),
        };
        let (res, steps) = crate::resolver::resolve_traced(&env, &qname, qtype, None).await;
        let steps = if trace || json { steps } else { Vec::new() };
        let report = crate::resolver::trace::Report::new(name, qtype, &listener.name, &res, steps);
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("report serializes")
            );
        } else {
            print!("{}", report.render());
        }
        if res.rcode == crate::wire::rcode::SERVFAIL {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

fn geo_build(csv: &std::path::Path, out: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(csv) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", csv.display());
            return ExitCode::FAILURE;
        }
    };
    let (asn, city) = match crate::geo::compile_csv(&text, csv) {
        Ok(v) => v,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let stem = csv
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "geo".into());
    for (kind, bytes) in [("asn", asn), ("city", city)] {
        let path = out.join(format!("{stem}-{kind}.mmdb"));
        if let Err(e) = std::fs::write(&path, &bytes) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    ExitCode::SUCCESS
}

fn geo_lookup(source: Source, ip: IpAddr) -> ExitCode {
    let snap = match Snapshot::build(&source) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gslbd geo lookup: the configuration does not build:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    let info = snap.gslb.geo.lookup(ip);
    let view = crate::gslb::explain::GeoView::new(&info, &snap.gslb.geo);
    println!(
        "{}",
        serde_json::to_string_pretty(&view).expect("geo view serializes")
    );
    ExitCode::SUCCESS
}

/// The `[cluster]` settings a cluster command uses: the file's, with the flags over them.
fn cluster_settings(
    config: Option<&std::path::Path>,
    etcd: &EtcdArgs,
) -> Result<crate::cluster::ClusterConfig, String> {
    let from_file = match config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            crate::config::parse(&text, p)
                .map_err(|e| e.to_string())?
                .cluster
                .map(|mut c| {
                    c.base = p.parent().unwrap_or(std::path::Path::new("")).to_path_buf();
                    c
                })
        }
        None => None,
    };
    let mut c = match (from_file, etcd.endpoints.is_empty()) {
        (Some(c), _) => c,
        (None, false) => toml::from_str::<crate::cluster::ClusterConfig>("endpoints = []")
            .map_err(|e| e.to_string())?,
        (None, true) => {
            return Err(
                "no etcd endpoints: give --endpoints, or a --config with [cluster]".to_string(),
            );
        }
    };
    if !etcd.endpoints.is_empty() {
        c.endpoints = etcd.endpoints.clone();
    }
    if let Some(p) = &etcd.prefix {
        c.prefix = p.clone();
    }
    let problems = c.problems();
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(c)
}

#[cfg(not(feature = "cluster"))]
fn cluster(_: ClusterCommand) -> ExitCode {
    eprintln!(
        "gslbd cluster: this gslbd was built without the cluster feature \
         (cargo build --release --features cluster; it needs protoc)"
    );
    ExitCode::FAILURE
}

#[cfg(feature = "cluster")]
fn cluster(command: ClusterCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        ClusterCommand::Push { config, etcd } => {
            let settings = match cluster_settings(Some(&config), &etcd) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("gslbd cluster push: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let who = std::env::var("USER").unwrap_or_else(|_| "cli".into());
            match rt.block_on(crate::cluster::etcd::push(&settings, &config, &who)) {
                Ok(n) => {
                    println!("{}: pushed as revision {n}", config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gslbd cluster push: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ClusterCommand::Status { config, etcd, json } => {
            let settings = match cluster_settings(config.as_deref(), &etcd) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("gslbd cluster status: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let v = match rt.block_on(crate::cluster::etcd::status(&settings)) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("gslbd cluster status: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if json {
                println!("{v:#}");
            } else {
                print_cluster_status(&v);
            }
            if v["problems"].as_array().is_some_and(|p| !p.is_empty()) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

#[cfg(feature = "cluster")]
fn print_cluster_status(v: &serde_json::Value) {
    match v["revision"].as_u64() {
        Some(n) => println!(
            "revision {n}, pushed by {} at {}",
            v["pushed_by"].as_str().unwrap_or("?"),
            v["pushed_at"].as_str().unwrap_or("?")
        ),
        None => println!("no revision pushed yet"),
    }
    let members = v["members"].as_array().cloned().unwrap_or_default();
    println!("{} node(s):", members.len());
    for m in &members {
        println!(
            "  {:<16} {:<13} revision {:<6} {}  geo {}",
            m["node"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            m["revision"],
            {
                // The first few addresses (a node with many listeners would fill the line).
                let a: Vec<&str> = m["addresses"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                let more = a.len().saturating_sub(3);
                let mut s = a.iter().take(3).copied().collect::<Vec<_>>().join(", ");
                if more > 0 {
                    s.push_str(&format!(" (+{more})"));
                }
                s
            },
            m["geo"]
        );
    }
    for p in v["problems"].as_array().into_iter().flatten() {
        println!("DIVERGES: {}", p.as_str().unwrap_or("?"));
    }
}

/// Tells systemd the service is ready when it started us with `Type=notify` (sd_notify(3): one
/// datagram "READY=1" to the socket in $NOTIFY_SOCKET; an abstract socket when it starts with @).
fn sd_notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(b"READY=1", &a))
    } else {
        sock.send_to(b"READY=1", std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!("sd_notify: {e}");
    }
}

#[cfg(feature = "cluster")]
fn start_cluster(server: &Server, node_file: &std::path::Path, addrs: &[crate::server::BoundAddr]) {
    let handle = server.handle();
    let Some(cfg) = handle.snapshot().cluster.clone() else {
        return;
    };
    let addresses = addrs
        .iter()
        .map(|a| format!("{} {}", a.proto, a.addr))
        .collect();
    crate::cluster::etcd::spawn(handle, node_file, cfg, addresses);
}

#[cfg(not(feature = "cluster"))]
fn start_cluster(_: &Server, _: &std::path::Path, _: &[crate::server::BoundAddr]) {}

fn check(source: Source) -> ExitCode {
    match Snapshot::build(&source) {
        Ok(s) => {
            for (i, z) in s.zones.iter().enumerate() {
                println!(
                    "zone {} serial {}: {} records ({})",
                    z.origin,
                    z.serial,
                    z.records,
                    z.file.display()
                );
                if let Some(x) = s.xfr.get(i).filter(|x| x.transferable()) {
                    // What a secondary will serve instead of each GSLB decision.
                    for (name, default) in crate::xfr::dynamic_names(z, &s.gslb) {
                        println!("  dynamic: {name} is transferred as {default}");
                    }
                    if let Some(j) = &x.journal_path {
                        println!("  IXFR journal: {}", j.display());
                    }
                }
            }
            println!(
                "{}: ok ({} zones, {} listeners)",
                source.describe(),
                s.zones.len(),
                s.listeners.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in &e.problems {
                eprintln!("{p}");
            }
            eprintln!("{}: {} problem(s)", source.describe(), e.problems.len());
            ExitCode::FAILURE
        }
    }
}

fn zone_status(source: Source) -> ExitCode {
    let snap = match Snapshot::build(&source) {
        Ok(s) => s,
        Err(e) => {
            for p in &e.problems {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    for (z, x) in snap.zones.iter().zip(&snap.xfr) {
        println!("{} serial {} records {}", z.origin, z.serial, z.records);
        if !x.transferable() {
            println!("  transfer: none");
            continue;
        }
        let acl: Vec<String> = x
            .acl
            .iter()
            .map(|e| match (&e.net, &e.key) {
                (Some(n), Some(k)) => format!("{n} key {k}"),
                (Some(n), None) => n.to_string(),
                (None, Some(k)) => format!("key {k}"),
                (None, None) => "any".into(),
            })
            .collect();
        println!("  transfer: {}", acl.join(", "));
        let notify: Vec<String> = x.notify.iter().map(|t| t.addr.to_string()).collect();
        println!("  notify: {}", notify.join(", "));
        match (&x.journal_path, &x.journal) {
            (Some(p), Some(j)) => {
                let size = std::fs::metadata(p).map_or(0, |m| m.len());
                let from = j.diffs.first().map_or(j.serial, |d| d.from);
                println!(
                    "  journal: {} ({size} bytes on disk, {} changes, IXFR from serial {from})",
                    p.display(),
                    j.diffs.len()
                );
            }
            _ => println!("  journal: in memory only (no file)"),
        }
    }
    ExitCode::SUCCESS
}

fn serve(source: Source) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        let lab = matches!(source.origin, Origin::Lab);
        let node_file = match &source.origin {
            Origin::Cluster(p) => Some(p.clone()),
            _ => None,
        };
        let what = source.describe();
        // Before the first load, which can take seconds: a SIGHUP meanwhile is queued, not fatal.
        let hup = match crate::server::sighup() {
            Ok(hup) => hup,
            Err(e) => {
                eprintln!("gslbd: cannot handle SIGHUP: {e}");
                return ExitCode::FAILURE;
            }
        };
        info!("loading {what}");
        match crate::server::raise_open_files_limit() {
            Some((soft, hard)) if soft < 4096 => warn!(
                "open files limit {soft} (hard {hard}): a busy resolver or many TCP clients \
                 will run out; raise LimitNOFILE (the shipped unit sets 65536)"
            ),
            Some((soft, _)) => info!("open files limit {soft}"),
            None => {}
        }
        let server = match Server::bind(source).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gslbd: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(crate::server::reload_on_sighup(server.handle(), hup));
        let addrs = server.addresses();
        {
            let snap = server.handle().snapshot();
            let records: usize = snap.zones.iter().map(|z| z.records).sum();
            info!(
                "serving {what}: {} zones, {records} records",
                snap.zones.len()
            );
        }
        for a in &addrs {
            info!("listening on {} {} ({})", a.proto, a.addr, a.listener);
        }
        if lab {
            print_lab_help(&addrs);
        }
        if let Some(p) = node_file {
            start_cluster(&server, &p, &addrs);
        }
        // systemd `Type=notify`: serving now (deploy/gslbd.service).
        sd_notify_ready();
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            info!("shutting down");
        };
        match server.run(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gslbd: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // Dropping a runtime waits for its blocking tasks, and a reload's build is one: shutdown must
    // not wait for a build (reads are bounded, but a large zone still takes seconds). What a
    // build leaves behind dies with the process; the health state file is replaced atomically.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// How to run this binary again from the user's shell: `gslbd` when that is what PATH finds
/// (installed), else its path, relative to the current directory when it is below it (after
/// `cargo run --release`: `./target/release/gslbd`), so the printed examples work as they are.
fn self_command() -> String {
    let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
    else {
        return "gslbd".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .filter_map(|d| d.join("gslbd").canonicalize().ok())
            .any(|p| p == exe)
    });
    if on_path {
        return "gslbd".into();
    }
    let cwd = std::env::current_dir().and_then(|d| d.canonicalize());
    match cwd.as_ref().map(|cwd| exe.strip_prefix(cwd)) {
        Ok(Ok(rel)) => format!("./{}", rel.display()),
        _ => exe.display().to_string(),
    }
}

fn print_lab_help(addrs: &[crate::server::BoundAddr]) {
    let me = self_command();
    let find = |name: &str| {
        addrs
            .iter()
            .find(|a| a.listener == name && a.proto == "udp")
            .map(|a| a.addr)
    };
    let (Some(all), Some(root)) = (find("all"), find("root")) else {
        return;
    };
    eprintln!();
    eprintln!("The lab world is up. Try:");
    eprintln!(
        "  dig @{} -p {} api.yourcompany.com          # the CNAME chain, authoritative",
        all.ip(),
        all.port()
    );
    eprintln!(
        "  dig @{} -p {} object.yourcompany.com       # object -> vip -> line -> region SLBs",
        all.ip(),
        all.port()
    );
    eprintln!(
        "  dig @{} -p {} -b 127.0.11.1 object.yourcompany.com  # as China Telecom's Shanghai LDNS",
        all.ip(),
        all.port()
    );
    eprintln!(
        "  dig @{} -p {} +subnet=2001:db8:b::/48 object.yourcompany.com  # decided by ECS",
        all.ip(),
        all.port()
    );
    eprintln!(
        "  {me} explain object.yourcompany.com --client 127.0.10.1  # why that answer, hop by hop"
    );
    if let (Some(mobile), Some(telecom)) = (find("mobile"), find("telecom")) {
        eprintln!(
            "  dig @{} -p {} object.yourcompany.com       # China Mobile's LDNS walks root -> com -> yourcompany",
            mobile.ip(),
            mobile.port()
        );
        eprintln!(
            "  dig @{} -p {} object.yourcompany.com       # China Telecom's LDNS: another region",
            telecom.ip(),
            telecom.port()
        );
        eprintln!(
            "  {me} resolve object.yourcompany.com --trace  # the walk step by step, like dig +trace"
        );
    }
    if let Some(http) = addrs.iter().find(|a| a.proto == "http").map(|a| a.addr) {
        eprintln!("  curl '{http}/100000/d?host=object.yourcompany.com&ip=127.0.11.1'  # HTTPDNS");
        eprintln!(
            "  dig +http-plain @{} -p {} object.yourcompany.com  # DoH (RFC 8484)",
            http.ip(),
            http.port()
        );
    }
    eprintln!(
        "  dig @{} -p {} www.yourcompany.com          # the root refers you to com.",
        root.ip(),
        root.port()
    );
    eprintln!(
        "  dig @{} -p {} +norec nothere.yourcompany.com  # NXDOMAIN with the SOA",
        all.ip(),
        all.port()
    );
    eprintln!("SIGHUP reloads; Ctrl-C stops.");
    eprintln!();
}
