//! The command line: [`Cli`] (parsed with clap) and [`run`], which carries a command out.
//!
//! A new subcommand (such as a dashboard) is a variant of [`Command`] and an arm of [`run`]
//! built on [`crate::client`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use node_server::etf::Term;
use node_server::placement::Placement;

use crate::client::{self, Ctl, Options, TlsFiles};
use crate::error::CtlError;
use crate::report::Report;

/// Operate Erlang-distribution nodes (ours and Erlang/OTP's alike): list them, ping them,
/// look inside, call functions, stop them.
///
/// nodectl joins the cluster as a hidden node with the cookie from --cookie, else the
/// ERLANG_COOKIE environment variable, else ~/.erlang.cookie. EPMD is asked at
/// ERL_EPMD_PORT (or 4369) unless --epmd-port says otherwise. A NODE without `@host` gets
/// this host's short name, as `erl -sname` does.
///
/// Exit status: 0 on success, 1 when the command failed (one line on stderr says why, or a
/// JSON object with "ok": false under --json), 2 for a wrong command line.
#[derive(Debug, Parser)]
#[command(name = "nodectl", version)]
pub struct Cli {
    /// Print one JSON object (with "ok") instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The cluster cookie.
    #[arg(long, global = true, value_name = "COOKIE")]
    pub cookie: Option<String>,
    /// EPMD's port on every host [default: ERL_EPMD_PORT or 4369].
    #[arg(long, global = true, value_name = "PORT")]
    pub epmd_port: Option<u16>,
    /// Seconds each connection, call or wait may take.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// nodectl's own node name [default: nodectl_PID on this host].
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// Connect over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA that nodes' certificates must chain to (mutual TLS).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new random cookie to ~/.erlang.cookie (mode 0400).
    Cookie {
        /// Replace an existing cookie file.
        #[arg(long)]
        force: bool,
    },
    /// List the nodes registered with EPMD, with port, type and roles.
    ListServers {
        /// The host whose EPMD to ask.
        #[arg(long, default_value = "localhost")]
        host: String,
    },
    /// Look a node up in EPMD by name, or the nodes that have a role.
    Lookup {
        /// The node's name (the part before `@`).
        #[arg(required_unless_present = "role")]
        name: Option<String>,
        /// Find the nodes that declare this role instead.
        #[arg(long, conflicts_with = "name")]
        role: Option<String>,
        /// The host whose EPMD to ask.
        #[arg(long, default_value = "localhost")]
        host: String,
    },
    /// Check that a node answers (and that a registered actor is alive).
    Ping {
        /// The node.
        node: String,
        /// A registered name that must be alive.
        actor: Option<String>,
        /// How many round trips to measure.
        #[arg(short = 'c', long, default_value_t = 1)]
        count: usize,
    },
    /// List a node's registered names.
    ListActors {
        /// The node.
        node: String,
    },
    /// List the nodes a node is connected to, and whether each connection is hidden.
    ListConnections {
        /// The node.
        node: String,
    },
    /// Show a node's version, uptime, process count, memory and traffic counters.
    Info {
        /// The node.
        node: String,
    },
    /// Call MODULE:FUNCTION(ARG, ...) on a node; arguments and result in Erlang syntax.
    Rpc {
        /// The node.
        node: String,
        /// The module.
        module: String,
        /// The function.
        function: String,
        /// The arguments, one Erlang term each (`42`, `-3`, `'an atom'`, `"text"`, `[1,2]`);
        /// options such as --cookie may follow them.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
    /// Evaluate Erlang expressions on a node of ours, as its shell would.
    ///
    /// EXPR is one or more expressions separated by commas, with or without the final `.`
    /// (`'X = 20, X + 22.'`): literals, variables and `=` matching, arithmetic, comparison
    /// and boolean operators, tuples, lists, maps, `case`, `if`, `begin`, `M:F(Args)` (the
    /// node's rpc functions, and `lists`, `maps`, `proplists` and the common BIFs natively),
    /// `Dest ! Msg`, `gen_server:call/2,3` and `gen_server:cast/2`. Prints the value as the
    /// Erlang shell prints it (`"abc"`, `{ok,[1,2]}`) and exits 0; on an error prints the
    /// shell's text (`** exception error: ...`, `* 1:5: variable 'Y' is unbound`) on stderr
    /// and exits 1. Runs `node_server_eval:eval/2` on the node, so its admin guard applies.
    Eval {
        /// The node.
        node: String,
        /// The expressions (several arguments are joined with spaces).
        #[arg(required = true, allow_hyphen_values = true, num_args = 1..)]
        expr: Vec<String>,
    },
    /// An interactive Erlang shell on a node of ours, as erl's: `(node@host)N> `.
    ///
    /// Each expression, ended by a `.` and possibly spread over lines, is evaluated on the
    /// node as `eval` evaluates it, with the bindings of the expressions before it: `X = 20.`
    /// then `X + 22.` gives 42; `b()` lists the bindings, `f()` and `f(X)` forget them.
    /// Values and errors print as the Erlang shell prints them, and the repl goes on. On a
    /// terminal, lines can be edited and the session's history recalled; from a pipe, plain
    /// lines are read. `q().` or Ctrl-D leaves the repl (exit 0) and, unlike erl's `q()`,
    /// leaves the node running; Ctrl-C drops the expression being typed. A node that cannot
    /// be reached any more ends the repl with `connection to NODE lost: ...` (exit 1).
    Repl {
        /// The node.
        node: String,
    },
    /// List the spawnable kinds of a node of ours (name/version, and what each requires).
    ///
    /// One line per kind: `name/version`, then `requires key=value,...` when the kind
    /// requires capabilities of the node it runs on.
    ListKinds {
        /// The node.
        node: String,
    },
    /// Start an actor of a spawnable kind on a node of ours; print its pid and node.
    ///
    /// Where it starts: the node --on names, else the one --strategy picks among the nodes
    /// that have KIND and meet its requirements [default: random]. Without --via, nodectl's
    /// own node decides: the candidates are the nodes in EPMD on this host and the nodes it
    /// connects to. With --via NODE, NODE decides (rpc node_server:spawn/3 there), from the
    /// nodes it knows (itself, its connections, the nodes in EPMD on their hosts).
    /// round-robin's turn is kept on the deciding node, per kind, in memory: with --via it
    /// is NODE's and goes on from one run to the next (until NODE restarts); without --via
    /// it is nodectl's, which lives for one command, so each run starts at the first
    /// candidate (by name).
    ///
    /// Prints `<PID> on NODE` (and `registered as NAME`). An unknown kind, arguments that do
    /// not fit it, no candidate or a name that cannot be registered are errors, and leave
    /// nothing running.
    Spawn {
        /// Start it on this node.
        #[arg(long, value_name = "NODE", conflicts_with = "strategy")]
        on: Option<String>,
        /// How to choose the node: random, round-robin, least-loaded, role:R, affinity:G
        /// (pg group), repulsion:G, host:H [default: random].
        #[arg(long, value_name = "STRATEGY")]
        strategy: Option<String>,
        /// Let this node (a node of ours) choose and spawn, instead of nodectl.
        #[arg(long, value_name = "NODE")]
        via: Option<String>,
        /// Register the new actor under NAME on its node.
        #[arg(long, value_name = "NAME")]
        register: Option<String>,
        /// Start it from the WebAssembly module HASH (`sha256:<hex>`, see `load`), as
        /// version N of KIND on the node that runs it (made on first use; the chosen node
        /// fetches the module from the deciding node when it lacks it). Needs --via, or
        /// --on (that node decides).
        #[arg(long, value_name = "HASH")]
        source: Option<String>,
        /// The kind: `counter`, or `counter/2` for version 2 (a bare name: the highest).
        kind: String,
        /// Its arguments, one Erlang term each (`5`, `-3`, `{a,<<"b">>}`); options such as
        /// --cookie may follow them.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
    /// Load a WebAssembly module on a node of ours; print its hash, `sha256:<hex>`.
    ///
    /// The node accepts it only when its source authority does: with an HMAC key (echo_node
    /// --sources-key FILE), --key KEYFILE must hold the same key (a trailing newline is
    /// trimmed), and nodectl sends HMAC-SHA256(key, module bytes). Loading the same bytes
    /// again changes nothing.
    Load {
        /// The node.
        node: String,
        /// The module file (`.wasm`).
        file: std::path::PathBuf,
        /// The file holding the key of the node's source authority.
        #[arg(long, value_name = "KEYFILE")]
        key: Option<std::path::PathBuf>,
    },
    /// Unload a WebAssembly module from a node of ours: new spawns from it fail, its kind
    /// versions go, actors already running it keep running.
    Unload {
        /// The node.
        node: String,
        /// The module's hash, `sha256:<hex>`.
        hash: String,
    },
    /// List the WebAssembly modules loaded on a node of ours: hash, size, kinds, actors.
    ListSources {
        /// The node.
        node: String,
    },
    /// Stop a node (init:stop/0) or one of its registered actors (exit/2).
    Shutdown {
        /// The node (omit with --all).
        #[arg(required_unless_present = "all")]
        node: Option<String>,
        /// A registered name to stop instead of the node.
        actor: Option<String>,
        /// Stop every node registered with EPMD on --host (needs --force).
        #[arg(long, conflicts_with_all = ["node", "actor"])]
        all: bool,
        /// Confirm --all.
        #[arg(long)]
        force: bool,
        /// Stop the actor with `kill` rather than `shutdown` (it cannot trap that).
        #[arg(long, requires = "actor")]
        kill: bool,
        /// The host whose EPMD lists the nodes for --all.
        #[arg(long, default_value = "localhost")]
        host: String,
    },
    /// Serve a live web page of every node in EPMD (nodes, connections, registered names, pg
    /// groups, message rates) until interrupted.
    Dashboard {
        /// Where to serve the page.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The host whose EPMD lists the nodes.
        #[arg(long, default_value = "localhost")]
        host: String,
        /// How often to poll EPMD and the nodes, in milliseconds.
        #[arg(long, default_value_t = 500)]
        refresh_ms: u64,
    },
}

impl Cli {
    /// The client options these arguments give.
    pub fn options(&self) -> Result<Options, CtlError> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err(CtlError::Usage(
                "--timeout must be a positive number of seconds".into(),
            ));
        }
        let mut opts = Options {
            cookie: self.cookie.clone(),
            timeout: Duration::from_secs_f64(self.timeout),
            name: self.name.clone(),
            ..Options::default()
        };
        if let Some(port) = self.epmd_port {
            opts.epmd_port = port;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            opts.tls = Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: self.tls_ca.clone(),
            });
        }
        Ok(opts)
    }
}

/// Parses the rpc arguments.
fn parse_args(args: &[String]) -> Result<Vec<Term>, CtlError> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            Term::parse(a).map_err(|e| CtlError::Usage(format!("argument {} ({a}): {e}", i + 1)))
        })
        .collect()
}

/// The strategy of `spawn` when neither --on nor --strategy is given.
pub const DEFAULT_STRATEGY: &str = "random";

/// The placement of `spawn`: --on's node, --strategy's strategy, or [`DEFAULT_STRATEGY`]. A
/// bare node name (in --on or `node:N`) gets this host's short name.
fn placement(on: Option<&str>, strategy: Option<&str>) -> Result<Placement, CtlError> {
    let placement = match (on, strategy) {
        (Some(_), Some(_)) => {
            return Err(CtlError::Usage(
                "--on and --strategy exclude each other".into(),
            ))
        }
        (Some(node), None) => Placement::Node(node.to_owned()),
        (None, strategy) => strategy.unwrap_or(DEFAULT_STRATEGY).parse().map_err(
            |e: node_server::placement::SpawnError| CtlError::Usage(format!("--strategy: {e}")),
        )?,
    };
    Ok(match placement {
        Placement::Node(n) => Placement::Node(client::full_node_name(&n)),
        other => other,
    })
}

/// Checks what `spawn` is given before anything is asked of a node.
fn spawn_request(command: &Command) -> Result<Option<client::SpawnRequest>, CtlError> {
    let Command::Spawn {
        on,
        strategy,
        via,
        register,
        source,
        kind,
        args,
    } = command
    else {
        return Ok(None);
    };
    let placement = placement(on.as_deref(), strategy.as_deref())?;
    node_server::kinds::parse_kind(kind).map_err(|e| CtlError::Usage(e.to_string()))?;
    if let Some(name) = register {
        if name.is_empty() || name.chars().count() > 255 || name == "undefined" {
            return Err(CtlError::Usage(format!(
                "--register {name:?}: a name is 1 to 255 characters, and not `undefined`"
            )));
        }
    }
    let request = client::SpawnRequest {
        kind: kind.clone(),
        args: parse_args(args)?,
        placement,
        via: via.as_deref().map(client::full_node_name),
        register: register.clone(),
        source: source
            .as_deref()
            .map(|h| {
                h.parse().map_err(|e: node_server::sources::SourceError| {
                    CtlError::Usage(format!("--source: {e}"))
                })
            })
            .transpose()?,
    };
    Ok(Some(request))
}

/// Carries out the command.
pub async fn run(cli: &Cli) -> Result<Report, CtlError> {
    let opts = cli.options()?;
    // Commands that need no node of ours.
    match &cli.command {
        Command::Cookie { force } => return client::write_new_cookie(*force).map(Report::Cookie),
        Command::ListServers { host } => {
            let nodes = client::list_servers(host, opts.epmd_port, opts.timeout).await?;
            return Ok(Report::Servers {
                host: host.clone(),
                epmd_port: opts.epmd_port,
                nodes,
            });
        }
        Command::Lookup { name, role, host } => {
            return match (name, role) {
                (_, Some(role)) => {
                    let nodes =
                        client::lookup_role(host, opts.epmd_port, opts.timeout, role).await?;
                    Ok(Report::Servers {
                        host: host.clone(),
                        epmd_port: opts.epmd_port,
                        nodes,
                    })
                }
                (Some(name), None) => client::lookup_name(host, opts.epmd_port, opts.timeout, name)
                    .await
                    .map(Report::Server),
                (None, None) => Err(CtlError::Usage("lookup needs NAME or --role".into())),
            };
        }
        Command::Dashboard {
            listen,
            host,
            refresh_ms,
        } => return dashboard(cli, &opts, *listen, host, *refresh_ms).await,
        Command::Shutdown {
            all: true, force, ..
        } if !force => {
            return Err(CtlError::Usage(
                "shutdown --all stops every node in EPMD: add --force to confirm".into(),
            ))
        }
        _ => {}
    }
    // A wrong spawn command line fails before our node starts.
    spawn_request(&cli.command)?;
    let ctl = Ctl::new(opts)?;
    let result = run_with(&ctl, &cli.command).await;
    ctl.close().await;
    result
}

async fn run_with(ctl: &Ctl, command: &Command) -> Result<Report, CtlError> {
    let full = |n: &str| client::full_node_name(n);
    Ok(match command {
        Command::Ping { node, actor, count } => {
            let node = full(node);
            let mut ping = ctl.ping(&node, *count).await?;
            if let Some(name) = actor {
                let status = ctl.actor_status(&node, name).await?;
                if !status.alive {
                    return Err(CtlError::NoActor(format!(
                        "{name} on {node} is registered as {} but not alive",
                        status.pid
                    )));
                }
                ping.actor = Some(status);
            }
            Report::Ping(ping)
        }
        Command::ListActors { node } => {
            let node = full(node);
            Report::Actors {
                actors: ctl.list_actors(&node).await?,
                node,
            }
        }
        Command::ListConnections { node } => {
            let node = full(node);
            Report::Connections {
                connections: ctl.list_connections(&node).await?,
                node,
            }
        }
        Command::Info { node } => Report::Info(ctl.info(&full(node)).await?),
        Command::Rpc {
            node,
            module,
            function,
            args,
        } => {
            let node = full(node);
            let args = parse_args(args)?;
            let result = ctl.rpc(&node, module, function, args).await?;
            Report::Rpc {
                node,
                result: crate::pretty::pretty(&result),
            }
        }
        Command::Eval { node, expr } => {
            let node = full(node);
            let result = ctl.eval(&node, &expr.join(" ")).await?;
            Report::Eval { node, result }
        }
        Command::Repl { node } => {
            let node = full(node);
            Report::Repl {
                evaluated: crate::repl::run(ctl, &node).await?,
                node,
            }
        }
        Command::ListKinds { node } => {
            let node = full(node);
            Report::Kinds {
                kinds: ctl.list_kinds(&node).await?,
                node,
            }
        }
        Command::Load { node, file, key } => {
            let node = full(node);
            let unreadable = |path: &std::path::Path, e: std::io::Error| {
                CtlError::Usage(format!("cannot read {}: {e}", path.display()))
            };
            let bytes = std::fs::read(file).map_err(|e| unreadable(file, e))?;
            let key = key
                .as_deref()
                .map(|k| node_server::sources::read_key(k).map_err(|e| unreadable(k, e)))
                .transpose()?;
            Report::Loaded {
                hash: ctl
                    .load_source(&node, bytes, key.as_deref())
                    .await?
                    .to_string(),
                node,
            }
        }
        Command::Unload { node, hash } => {
            let node = full(node);
            let parsed = hash
                .parse()
                .map_err(|e: node_server::sources::SourceError| CtlError::Usage(e.to_string()))?;
            ctl.unload_source(&node, &parsed).await?;
            Report::Unloaded {
                node,
                hash: hash.clone(),
            }
        }
        Command::ListSources { node } => {
            let node = full(node);
            Report::Sources {
                sources: ctl.list_sources(&node).await?,
                node,
            }
        }
        Command::Spawn { .. } => {
            let Some(request) = spawn_request(command)? else {
                return Err(CtlError::Usage("not spawn".into()));
            };
            Report::Spawned(ctl.spawn(&request).await?)
        }
        Command::Shutdown {
            all: true, host, ..
        } => Report::StoppedAll {
            nodes: ctl.stop_all(host).await?,
            host: host.clone(),
        },
        Command::Shutdown {
            node: Some(node),
            actor,
            kill,
            ..
        } => {
            let node = full(node);
            Report::Stopped(match actor {
                Some(actor) => ctl.stop_actor(&node, actor, *kill).await?,
                None => ctl.stop_node(&node).await?,
            })
        }
        Command::Shutdown { node: None, .. } => {
            return Err(CtlError::Usage("shutdown needs NODE or --all".into()))
        }
        Command::Cookie { .. }
        | Command::ListServers { .. }
        | Command::Lookup { .. }
        | Command::Dashboard { .. } => {
            return Err(CtlError::Usage("handled without a node".into()))
        }
    })
}

/// Runs the dashboard (see the `node_dashboard` crate) until Ctrl-C or SIGTERM.
async fn dashboard(
    cli: &Cli,
    opts: &Options,
    listen: std::net::SocketAddr,
    host: &str,
    refresh_ms: u64,
) -> Result<Report, CtlError> {
    let (cookie, _) = client::resolve_cookie(cli.cookie.as_deref())?;
    let mut config = node_dashboard::DashboardConfig::new()
        .listen(listen)
        .cookie(cookie)
        .epmd(host, opts.epmd_port)
        .refresh(Duration::from_millis(refresh_ms));
    if let Some(name) = &cli.name {
        config = config.node_name(name.clone());
    }
    let handle = node_dashboard::serve(config)
        .await
        .map_err(|e| CtlError::Dashboard(e.to_string()))?;
    let url = handle.url();
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "dashboard at {url} (Ctrl-C stops it)");
        let _ = out.flush();
    }
    wait_for_stop().await;
    handle.shutdown().await;
    Ok(Report::Dashboard { url })
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rpc_arguments_are_terms() {
        let cli =
            Cli::try_parse_from(["nodectl", "rpc", "n@h", "lists", "seq", "1", "-3"]).unwrap();
        let Command::Rpc { args, .. } = &cli.command else {
            panic!("not rpc");
        };
        assert_eq!(parse_args(args).unwrap(), vec![Term::Int(1), Term::Int(-3)]);
        assert!(matches!(
            parse_args(&["{unclosed".into()]),
            Err(CtlError::Usage(_))
        ));
        // Options after the arguments are options, not terms.
        let cli = Cli::try_parse_from([
            "nodectl", "rpc", "probe", "lists", "seq", "1", "10", "--cookie", "abc", "--json",
        ])
        .unwrap();
        let Command::Rpc { args, .. } = &cli.command else {
            panic!("not rpc");
        };
        assert_eq!(args, &["1", "10"]);
        assert_eq!(cli.cookie.as_deref(), Some("abc"));
        assert!(cli.json);
    }

    #[test]
    fn spawn_takes_a_placement_a_kind_and_terms() {
        let parse = |args: &[&str]| {
            let mut all = vec!["nodectl", "spawn"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| spawn_request(&cli.command))
        };
        let req = parse(&["counter", "5", "{a,-1}", "--via", "n@h"])
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(req.kind, "counter");
        assert_eq!(req.args, vec![Term::Int(5), Term::parse("{a,-1}").unwrap()]);
        assert_eq!(req.placement, Placement::Random, "the default");
        assert_eq!(req.via.as_deref(), Some("n@h"));
        let req = parse(&["--strategy", "role:db", "--register", "c1", "counter/2"])
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(req.placement, Placement::Role("db".into()));
        assert_eq!(req.register.as_deref(), Some("c1"));
        // A bare node gets this host's short name.
        let req = parse(&["--on", "a", "counter"]).unwrap().unwrap().unwrap();
        assert_eq!(req.placement, Placement::Node(client::full_node_name("a")));
        // Wrong command lines: clap's, or ours (usage errors, exit 2).
        assert!(parse(&["--on", "a", "--strategy", "random", "counter"]).is_err());
        assert!(parse(&[]).is_err());
        for bad in [
            &["--strategy", "fastest", "counter"][..],
            &["--strategy", "role:", "counter"],
            &["counter", "{1"],
            &["counter/0"],
            &["--register", "undefined", "counter"],
        ] {
            assert!(
                matches!(parse(bad).unwrap(), Err(CtlError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn eval_takes_expressions() {
        let cli = Cli::try_parse_from(["nodectl", "eval", "n@h", "-1 + X", "."]).unwrap();
        let Command::Eval { expr, .. } = &cli.command else {
            panic!("not eval");
        };
        assert_eq!(expr.join(" "), "-1 + X .");
        assert!(Cli::try_parse_from(["nodectl", "eval", "n@h"]).is_err());
    }

    #[test]
    fn shutdown_all_and_node_exclude_each_other() {
        assert!(Cli::try_parse_from(["nodectl", "shutdown", "--all", "--force"]).is_ok());
        assert!(Cli::try_parse_from(["nodectl", "shutdown", "n@h", "--all"]).is_err());
        assert!(Cli::try_parse_from(["nodectl", "shutdown"]).is_err());
        assert!(Cli::try_parse_from(["nodectl", "lookup"]).is_err());
    }
}
