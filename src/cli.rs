//! The command line. `gslbd` alone serves the built-in lab world; `serve --config` serves real
//! data; `check --config` runs the same snapshot builder as serve and reload and reports every
//! problem (exit status 1).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::info;

use crate::config::{Origin, Source};
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
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Use this port for every listener address instead of the configured ones (0 = pick one).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Load and check a configuration and its zones exactly as serve would; print every problem.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn source(config: Option<PathBuf>, port: Option<u16>) -> Source {
    let origin = match config {
        Some(p) => Origin::File(p),
        None => Origin::Lab,
    };
    Source { origin, port }
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
    match cli.command.unwrap_or(Command::Serve {
        config: None,
        port: None,
    }) {
        Command::Check { config } => check(source(config, None)),
        Command::Serve { config, port } => serve(source(config, port)),
    }
}

fn check(source: Source) -> ExitCode {
    match Snapshot::build(&source) {
        Ok(s) => {
            for z in &s.zones {
                println!(
                    "zone {} serial {}: {} records ({})",
                    z.origin,
                    z.serial,
                    z.records,
                    z.file.display()
                );
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
    rt.block_on(async move {
        let lab = matches!(source.origin, Origin::Lab);
        let what = source.describe();
        let server = match Server::bind(source).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gslbd: {e}");
                return ExitCode::FAILURE;
            }
        };
        match crate::server::reload_on_sighup(server.handle()) {
            Ok(task) => {
                tokio::spawn(task);
            }
            Err(e) => {
                eprintln!("gslbd: cannot handle SIGHUP: {e}");
                return ExitCode::FAILURE;
            }
        }
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
    })
}

fn print_lab_help(addrs: &[crate::server::BoundAddr]) {
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
