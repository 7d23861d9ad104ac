//! `gslbd ctl`: the control client, in the style of knotc / nsd-control / gdnsdctl, talking to a
//! running server's admin endpoints (`http::admin`, `POST /admin/reload`, `/healthz`).
//!
//! Where to: `--socket PATH` (the server's `[admin] socket`: no token, the file's permissions
//! are the check), else `--url http://HOST:PORT`, else `$GSLBD_URL`, else `--config`'s
//! `[admin] socket`, else its first `[http] listen` address (an unspecified address means this
//! host: 127.0.0.1 or ::1). The token:
//! `--token`, else `$GSLBD_ADMIN_TOKEN`, else `--config`'s `[http] admin_token`. Plain HTTP only:
//! the server accepts the token in clear from loopback (or with `[admin] token_over_plain_http`).
//! One HTTP/1.0 request per command (no keep-alive to manage, no chunked bodies).
//!
//! Output is the server's JSON, pretty-printed (overrides, health and audit also as one line per
//! item); an error answer prints `gslbd ctl: STATUS CODE: message` and exits 1.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The server's HTTP address, http://HOST:PORT (default: $GSLBD_URL, else from --config).
    #[arg(long, conflicts_with = "url")]
    pub url: Option<String>,
    /// The server's admin socket ([admin] socket): no token needed.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The server's configuration: its [http] listen address and admin_token.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The admin token (default: $GSLBD_ADMIN_TOKEN, else --config's [http] admin_token).
    #[arg(long)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// What the server serves and whether the last reload worked (/healthz).
    Status,
    /// GSLB answers by region (/admin/traffic).
    Stats,
    /// Reload the configuration (like SIGHUP).
    Reload,
    /// Every pool member's check state, last error, flaps and override.
    Health {
        /// Only this location rule.
        rule: Option<String>,
    },
    /// Take an address, a region or a carrier line out of the answers (checks go on).
    Drain(TargetArgs),
    /// Remove the overrides of an address, a region or a line (or one by --id).
    Undrain {
        /// What to put back: address, region or line (with VALUE), or --id.
        #[arg(requires = "value", required_unless_present = "id")]
        kind: Option<Kind>,
        /// The address, region id or carrier id.
        value: Option<String>,
        #[command(flatten)]
        opts: Opts,
        /// Remove the override with this id instead.
        #[arg(long, conflicts_with = "kind")]
        id: Option<u64>,
    },
    /// Count an address or a region as up (or down) whatever the checks say.
    Force {
        state: Forced,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Set a pool member's weight (0 = drained but checked), or a region's weight between the
    /// regions of a rule (its `split` and `fallback = "spread"`; 0 = drained).
    Weight {
        /// An address, or a region id.
        target: String,
        weight: u32,
        #[command(flatten)]
        opts: Opts,
    },
    /// The overrides in force.
    Overrides,
    /// Every zone served, and each secondary zone's transfers: serial held, last transfer, next
    /// refresh, expiry, last error (`gslbd zone status` shows the configuration's view offline).
    Zones,
    /// The newest audit events (reloads, overrides, health transitions).
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// How the GSLB answers NAME for a client, overrides included.
    Explain {
        name: String,
        #[arg(long)]
        client: IpAddr,
        #[arg(long = "type", short = 't', default_value = "A")]
        qtype: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Address,
    Region,
    Line,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Forced {
    Up,
    Down,
}

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// What to act on.
    pub kind: Kind,
    /// The address, region id or carrier id.
    pub value: String,
    #[command(flatten)]
    pub opts: Opts,
}

#[derive(Args, Debug)]
pub struct Opts {
    /// Only in this rule (default: every rule).
    #[arg(long)]
    pub rule: Option<String>,
    /// An address only in this region's pool.
    #[arg(long)]
    pub region: Option<String>,
    /// Why (kept in the override and the audit trail).
    #[arg(long)]
    pub reason: Option<String>,
    /// End by itself after this many seconds.
    #[arg(long = "for")]
    pub expires_in: Option<u64>,
}

/// An admin request body for `action` on `t`.
fn body(action: &str, kind: Kind, value: &str, opts: &Opts) -> Result<Value, String> {
    let mut b = json!({ "action": action });
    match kind {
        Kind::Address => {
            let ip: IpAddr = value
                .parse()
                .map_err(|_| format!("{value:?} is not an IP address"))?;
            b["address"] = json!(ip);
            if let Some(r) = &opts.region {
                b["region"] = json!(r);
            }
        }
        Kind::Region | Kind::Line if opts.region.is_some() => {
            return Err("--region goes with an address".into());
        }
        Kind::Region => b["region"] = json!(value),
        Kind::Line => b["line"] = json!(value),
    }
    if let Some(r) = &opts.rule {
        b["rule"] = json!(r);
    }
    if let Some(r) = &opts.reason {
        b["reason"] = json!(r);
    }
    if let Some(s) = opts.expires_in {
        b["expires_in"] = json!(s);
    }
    if let Ok(user) = std::env::var("USER")
        && !user.is_empty()
    {
        b["who"] = json!(user);
    }
    Ok(b)
}

/// Query-string escaping of one value (RFC 3986 unreserved characters kept).
fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where requests go.
enum Dest {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Tcp(a) => write!(f, "{a}"),
            Dest::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

struct Endpoint {
    addr: Dest,
    host: String,
    token: Option<String>,
}

fn endpoint(args: &CtlArgs) -> Result<Endpoint, String> {
    let config = match &args.config {
        Some(path) => {
            let source = crate::config::Source {
                origin: crate::config::Origin::File(path.clone()),
                port: None,
                udp_fast_path: None,
                udp_workers: None,
            };
            let (config, _, _) = source.load().map_err(|e| e.to_string())?;
            Some(config)
        }
        None => None,
    };
    let http = config.as_ref().and_then(|c| c.http.as_ref());
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("GSLBD_ADMIN_TOKEN").ok())
        .or_else(|| http.and_then(|h| h.admin_token.clone()));
    if let Some(path) = &args.socket {
        return Ok(Endpoint {
            addr: Dest::Unix(path.clone()),
            host: "localhost".into(),
            token: None,
        });
    }
    let url = args.url.clone().or_else(|| std::env::var("GSLBD_URL").ok());
    if url.is_none()
        && let Some(c) = &config
        && let Some(sock) = &c.admin.socket
    {
        // Relative to the configuration's folder, as the server reads it.
        let base = args
            .config
            .as_deref()
            .and_then(std::path::Path::parent)
            .unwrap_or(std::path::Path::new("."));
        return Ok(Endpoint {
            addr: Dest::Unix(base.join(sock)),
            host: "localhost".into(),
            token: None,
        });
    }
    let addr = match url {
        Some(u) => {
            let rest = u.strip_prefix("http://").ok_or_else(|| {
                format!("--url {u}: only http:// (ctl speaks plain HTTP to a loopback listener)")
            })?;
            let hostport = rest.trim_end_matches('/');
            hostport
                .parse::<SocketAddr>()
                .map_err(|_| format!("--url {u}: expected http://IP:PORT"))?
        }
        None => {
            let h = http.ok_or(
                "no server to talk to: give --url http://IP:PORT or --config with an [http] section",
            )?;
            if h.tls.is_some() {
                return Err(
                    "the configured [http] listener speaks TLS; ctl speaks plain HTTP: \
                     give --url of a plain listener"
                        .into(),
                );
            }
            let mut a = *h.listen.first().ok_or("[http] listen is empty")?;
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    IpAddr::from([127, 0, 0, 1])
                } else {
                    IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                });
            }
            a
        }
    };
    Ok(Endpoint {
        addr: Dest::Tcp(addr),
        host: addr.to_string(),
        token,
    })
}

/// A connection to the server, whichever kind.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One request; the status and the body parsed as JSON (text when it is not JSON). HTTP/1.0
/// (RFC 1945): one request per connection, the body ends where the connection does, so there is
/// no chunked coding to undo; the response head is parsed by `httparse`.
async fn request(
    ep: &Endpoint,
    method: &str,
    target: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LIMIT: u64 = 16 * 1024 * 1024;
    let exchange = async {
        let mut stream: Box<dyn Stream> = match &ep.addr {
            Dest::Tcp(a) => Box::new(
                tokio::net::TcpStream::connect(a)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            Dest::Unix(p) => Box::new(
                tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!("{method} {target} HTTP/1.0\r\nHost: {}\r\n", ep.host);
        if let Some(t) = &ep.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        stream
            .take(LIMIT)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(bytes)
    };
    let bytes = tokio::time::timeout(std::time::Duration::from_secs(60), exchange)
        .await
        .map_err(|_| format!("{}: no answer within 60 s", ep.addr))?
        .map_err(|e| format!("{}: {e}", ep.addr))?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let start = match resp.parse(&bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(format!("{}: not an HTTP response", ep.addr)),
    };
    let status = resp.code.unwrap_or(0);
    let body = &bytes[start..];
    let v = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    Ok((status, v))
}

pub fn main(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gslbd ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gslbd ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &CtlArgs) -> Result<(), String> {
    let ep = endpoint(args)?;
    let (method, target, body) = match &args.command {
        CtlCommand::Status => ("GET", "/healthz".to_string(), None),
        CtlCommand::Stats => ("GET", "/admin/traffic".to_string(), None),
        CtlCommand::Reload => ("POST", "/admin/reload".to_string(), None),
        CtlCommand::Health { rule } => (
            "GET",
            match rule {
                Some(r) => format!("/admin/health?rule={}", escape(r)),
                None => "/admin/health".to_string(),
            },
            None,
        ),
        CtlCommand::Drain(t) => (
            "POST",
            "/admin/overrides".into(),
            Some(body("drain", t.kind, &t.value, &t.opts)?),
        ),
        CtlCommand::Force { state, target: t } => {
            let action = match state {
                Forced::Up => "up",
                Forced::Down => "down",
            };
            (
                "POST",
                "/admin/overrides".into(),
                Some(body(action, t.kind, &t.value, &t.opts)?),
            )
        }
        CtlCommand::Weight {
            target,
            weight,
            opts,
        } => {
            // An address, else a region id (region ids are never addresses).
            let kind = if target.parse::<IpAddr>().is_ok() {
                Kind::Address
            } else {
                Kind::Region
            };
            let mut b = body("weight", kind, target, opts)?;
            b["weight"] = json!(weight);
            ("POST", "/admin/overrides".into(), Some(b))
        }
        CtlCommand::Undrain {
            kind,
            value,
            opts,
            id,
        } => {
            let q = match (kind, value, id) {
                (_, _, Some(id)) => format!("id={id}"),
                (Some(kind), Some(value), None) => {
                    let mut q = match kind {
                        Kind::Address => format!("address={}", escape(value)),
                        Kind::Region => format!("region={}", escape(value)),
                        Kind::Line => format!("line={}", escape(value)),
                    };
                    if let Some(r) = &opts.region {
                        q.push_str(&format!("&region={}", escape(r)));
                    }
                    if let Some(r) = &opts.rule {
                        q.push_str(&format!("&rule={}", escape(r)));
                    }
                    q
                }
                _ => return Err("undrain: name a target (KIND VALUE) or --id".into()),
            };
            ("DELETE", format!("/admin/overrides?{q}"), None)
        }
        CtlCommand::Overrides => ("GET", "/admin/overrides".into(), None),
        CtlCommand::Zones => ("GET", "/admin/zones".into(), None),
        CtlCommand::Audit { limit } => ("GET", format!("/admin/audit?limit={limit}"), None),
        CtlCommand::Explain {
            name,
            client,
            qtype,
        } => (
            "GET",
            format!(
                "/admin/explain?name={}&client={client}&type={}",
                escape(name),
                escape(qtype)
            ),
            None,
        ),
    };
    let (status, v) = request(&ep, method, &target, body).await?;
    if !(200..300).contains(&status) {
        let code = v["code"].as_str().unwrap_or("");
        let message = v["message"]
            .as_str()
            .map_or_else(|| v.to_string(), str::to_string);
        let mut msg = format!("{status} {code}: {message}");
        if let Some(problems) = v["problems"].as_array() {
            for p in problems {
                msg.push_str(&format!("\n  {}", p.as_str().unwrap_or("")));
            }
        }
        return Err(msg);
    }
    print(&args.command, &v);
    Ok(())
}

fn print(cmd: &CtlCommand, v: &Value) {
    match cmd {
        CtlCommand::Zones => {
            let when = |v: &Value| {
                v.as_u64()
                    .map_or("-".to_string(), crate::overrides::rfc3339)
            };
            for z in v["zones"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{} {} serial {} ({} records)",
                    z["zone"].as_str().unwrap_or("?"),
                    z["kind"].as_str().unwrap_or("?"),
                    z["serial"],
                    z["records"]
                );
                let s = &z["secondary"];
                if s.is_object() {
                    println!(
                        "  held serial {}, last transfer {} ({}), next refresh {}, expires {}{}",
                        s["serial"],
                        when(&s["last_transfer"]),
                        s["last_kind"].as_str().unwrap_or("-"),
                        when(&s["next_refresh"]),
                        when(&s["expires"]),
                        if s["expired"] == true { " EXPIRED" } else { "" }
                    );
                    println!(
                        "  transfers: {} AXFR, {} IXFR, {} failed, {} bytes{}",
                        s["transfers_axfr"],
                        s["transfers_ixfr"],
                        s["failures"],
                        s["bytes"],
                        s["last_error"]
                            .as_str()
                            .map(|e| format!("; last error: {e}"))
                            .unwrap_or_default()
                    );
                    if let Some(cat) = s["catalog"].as_str() {
                        let groups: Vec<&str> = s["groups"]
                            .as_array()
                            .map(|g| g.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        println!(
                            "  member of catalog {cat} (label {}){}",
                            s["catalog_label"].as_str().unwrap_or("?"),
                            if groups.is_empty() {
                                String::new()
                            } else {
                                format!(", groups {}", groups.join(", "))
                            }
                        );
                    }
                }
            }
        }
        CtlCommand::Explain { .. } => {
            print!("{}", v["text"].as_str().unwrap_or(""));
        }
        CtlCommand::Overrides => {
            let list = v["overrides"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no overrides");
            }
            for o in list {
                println!(
                    "{:>4}  {}  {}",
                    o["id"],
                    o["target"].as_str().unwrap_or(""),
                    o["note"].as_str().unwrap_or("")
                );
            }
        }
        CtlCommand::Health { .. } => {
            for m in v["members"].as_array().cloned().unwrap_or_default() {
                let mut line = format!(
                    "{}/{}  {:<24} weight {:<3} {}",
                    m["rule"].as_str().unwrap_or(""),
                    m["region"].as_str().unwrap_or(""),
                    m["address"].as_str().unwrap_or(""),
                    m["weight"],
                    m["state"].as_str().unwrap_or("")
                );
                if let Some(e) = m["last_error"].as_str() {
                    line.push_str(&format!(" (last error: {e})"));
                }
                if let Some(n) = m["override"]["note"].as_str() {
                    line.push_str(&format!("; {n}"));
                }
                println!("{line}");
            }
        }
        CtlCommand::Audit { .. } => {
            for e in v["events"].as_array().cloned().unwrap_or_default() {
                println!("{e}");
            }
        }
        _ => println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        ),
    }
}
