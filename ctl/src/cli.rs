//! The command line of `vsctl`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone, PartialEq)]
#[command(name = "vsctl", version, about = "Control and inspect vswitchd")]
pub struct Cli {
    /// vswitchd's control socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "VSWITCH_SOCKET",
        default_value = api::DEFAULT_SOCKET
    )]
    pub socket: PathBuf,

    /// Print the reply's data as JSON instead of tables (pretty-printed; one object per
    /// line for `flows log`).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Command {
    /// Add, delete and list ports.
    #[command(subcommand)]
    Port(PortCmd),
    /// Port, drop, FDB and worker counters; with --rate, live per-port rates.
    Stats(StatsArgs),
    /// Inspect and manage the MAC learning table.
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// Version, DPDK, hugepages, workers and config generation.
    Status,
    /// Routed pods: proxy ARP for 169.254.1.1, /32 routes, anti-spoofing.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Create or replace the objects of a YAML file; objects not in it stay.
    ///
    /// Kinds: projectcalico.org/v3 IPPool, NetworkPolicy, GlobalNetworkPolicy and
    /// Tier; networking.k8s.io/v1 NetworkPolicy; v1 Namespace; vswitch.dev/v1alpha1
    /// Node and Endpoint; Lists of Namespaces and policy objects. As with `kubectl
    /// apply`, an object replaces the one of the same kind, namespace and name. The
    /// whole file is applied in one step or not at all: a document that is not
    /// understood refuses the file, with its number and line, before anything is sent.
    Apply {
        /// The file; `-` for standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: String,
    },
    /// Delete the Namespaces and policy objects a YAML file names.
    ///
    /// Kinds: projectcalico.org/v3 NetworkPolicy, GlobalNetworkPolicy and Tier;
    /// networking.k8s.io/v1 NetworkPolicy; v1 Namespace; Lists of them. Objects are
    /// matched by kind, namespace and name; deleting a Namespace leaves the policies
    /// in it. All of them are deleted in one step, or none.
    Delete {
        /// The file; `-` for standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: String,
        /// Skip objects that are not in force instead of refusing the deletion.
        #[arg(long)]
        ignore_not_found: bool,
    },
    /// Show desired and assigned state, and what the workers track.
    Get {
        #[arg(value_enum)]
        what: GetWhat,
        /// conntrack: only this pod's connections (NAMESPACE/NAME, or its port's name).
        #[arg(long, value_name = "POD")]
        pod: Option<String>,
        /// conntrack: only connections in this state (syn_sent, syn_recv, established,
        /// picked_up, fin_wait, time_wait, close, unreplied, replied).
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// conntrack, nat: list at most this many (the total is printed too); 0 for
        /// the default, 1000.
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u32,
        /// Output format: a table, JSON (as --json), or YAML. For policies and
        /// namespaces, YAML is the objects as `vsctl apply -f` and `vsctl delete -f`
        /// take them back.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Forget what the workers track.
    Flush {
        #[arg(value_enum)]
        what: FlushWhat,
        /// Only this pod's connections (NAMESPACE/NAME, or its port's name).
        #[arg(long, value_name = "POD")]
        pod: Option<String>,
    },
    /// Flow logs of policy rules with action Log.
    #[command(subcommand)]
    Flows(FlowsCmd),
    /// Network policy tools that need no switch: simulate a cluster's connectivity.
    #[command(subcommand)]
    Policy(crate::policy_cmd::PolicyCmd),
    /// Calico selectors: evaluate them against labels (JSON lines on standard input).
    #[command(subcommand)]
    Selector(crate::policy_cmd::SelectorCmd),
    /// Copy the frames of ports or pods to a pcapng file (`-w -`: standard output,
    /// for `tshark -r -` or Wireshark), both directions, until the count or the
    /// duration is reached or the command is interrupted.
    ///
    /// Each port is an interface of the file, named for the port; each frame is
    /// marked inbound (received by the switch from the port) or outbound (handed
    /// to the port). Ports not captured cost nothing; a captured port's frames are
    /// matched by the switch's workers and copied into a bounded queue, and what
    /// does not fit is counted as dropped (printed at the end).
    Capture(CaptureArgs),
    /// Follow packets through the switch's stages: for the next packets received on
    /// ports or pods that match a filter, what each stage decided (a Service's
    /// backend, each policy zone's conntrack state and the policy rule that decided,
    /// what was sent where, encapsulation and natOutgoing, or the drop reason).
    ///
    /// With --inject, a made-up packet from a pod (or from the outside world through
    /// the uplink) goes through the same stages on the switch's current
    /// configuration without being sent, as the first packet of a new connection.
    Trace(TraceArgs),
    /// What each drop reason of `vsctl stats` (and of `vswitch_drops_total`) means and
    /// what to do about it; one reason, or all. Needs no switch.
    DropReasons {
        #[arg(value_name = "REASON")]
        reason: Option<String>,
    },
    /// Print a shell completion script: `vsctl completion bash >
    /// /etc/bash_completion.d/vsctl`, or `source <(vsctl completion zsh)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (vsctl.1 and one per command, vsctl-capture.1, ...) into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// The node agent: watch the Kubernetes API and keep vswitchd's desired state
    /// (pools, nodes, namespaces, policies, the cluster's pods, Services) in line
    /// with it. Runs until killed.
    Agent(crate::agent::AgentArgs),
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct CaptureArgs {
    /// Port names, or pods as NAMESPACE/NAME; every port when none is given.
    #[arg(value_name = "PORT")]
    pub ports: Vec<String>,
    /// Where to write the pcapng file; `-` for standard output.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: String,
    /// Keep only frames that match: `arp`, `ip`, `ip6`, `tcp`, `udp`, `icmp`,
    /// `host A.B.C.D`, `port N`, joined by `and` (a subset of tcpdump's filters).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Stop after this many frames.
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub duration: Option<Duration>,
    /// Bytes kept of each frame; 0 keeps whole frames.
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 0)]
    pub snaplen: u32,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct TraceArgs {
    /// Port names, or pods as NAMESPACE/NAME, whose received packets are traced;
    /// every port when none is given.
    #[arg(value_name = "PORT", conflicts_with = "inject")]
    pub ports: Vec<String>,
    /// Trace only packets that match: `arp`, `ip`, `tcp`, `udp`, `icmp`,
    /// `host A.B.C.D`, `port N`, joined by `and` (as `vsctl capture` takes).
    #[arg(long, value_name = "EXPR", conflicts_with = "inject")]
    pub filter: Option<String>,
    /// Packets to trace.
    #[arg(
        short = 'c',
        long,
        value_name = "N",
        default_value_t = 1,
        conflicts_with = "inject"
    )]
    pub count: u32,
    /// Stop waiting for packets after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval, default_value = "30")]
    pub timeout: Duration,
    /// Send a made-up packet (--from, --to, --proto, ...) instead of waiting for real ones.
    #[arg(long, requires_all = ["from", "to"])]
    pub inject: bool,
    /// The made-up packet's origin: a pod (NAMESPACE/NAME or its port's name), or the
    /// uplink's port name for a packet from outside (then --src is needed).
    #[arg(long, value_name = "POD|PORT", requires = "inject")]
    pub from: Option<String>,
    /// Its source address (a pod's own when not given).
    #[arg(long, value_name = "ADDR", requires = "inject")]
    pub src: Option<std::net::Ipv4Addr>,
    /// Its destination address.
    #[arg(long, value_name = "ADDR", requires = "inject")]
    pub to: Option<std::net::Ipv4Addr>,
    /// Its protocol (icmp: an echo request).
    #[arg(long, value_name = "PROTO", default_value = "tcp", value_parser = ["tcp", "udp", "icmp"])]
    pub proto: String,
    /// Its source port (the echo id for icmp).
    #[arg(long, value_name = "N", default_value_t = 40000)]
    pub sport: u16,
    /// Its destination port.
    #[arg(long, value_name = "N", default_value_t = 80)]
    pub dport: u16,
    /// Its TCP flags, as letters: S, A, F, R, P (default S).
    #[arg(long, value_name = "FLAGS")]
    pub flags: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetWhat {
    Nodes,
    Pools,
    Blocks,
    Endpoints,
    Pods,
    /// Policy objects in force: KIND NAMESPACE NAME TIER ORDER TYPES RULES
    /// (ingress/egress rule counts); with --json, the namespaces and policies.
    Policies,
    /// Namespaces in force and their labels.
    Namespaces,
    /// Services in force: NAME CLUSTER-IPS PORT (port/protocol, nodePort) BACKENDS
    /// AFFINITY.
    Services,
    /// The cluster's pods as policy sees them (from the node agent): NAME IPS
    /// LOCAL LABELS.
    ClusterPods,
    /// Tracked connections, from every worker: POD PROTO SRC DST STATE IDLE
    /// EXPIRES LCORE, from the originator's side (a pod's zone: the pod whose
    /// policy tracks it).
    Conntrack,
    /// natOutgoing translations: PROTO POD NODE (the address and port the flow
    /// leaves with) REMOTE STATE AGE EXPIRES LCORE.
    Nat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushWhat {
    /// Tracked connections: their next packets are judged by policy anew (a TCP
    /// connection is picked up mid-stream if policy allows it).
    Conntrack,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum FlowsCmd {
    /// Print the packets that matched a Log rule, oldest first.
    ///
    /// Columns: TIME (RFC 3339, UTC), ENDPOINT (the pod whose policy logged it), DIR
    /// (ingress or egress of that pod), PROTO, SRC:SPORT, DST:DPORT (for ICMP, the type
    /// and code), RULE (the Log rule), VERDICT and DECIDED-BY (the verdict of that
    /// direction and what decided it). With --json, one JSON object per line.
    Log(FlowLogArgs),
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct FlowLogArgs {
    /// Only records with a sequence number above SEQ.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: u64,
    /// Keep asking for new records every 500 ms until interrupted.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum EndpointCmd {
    /// Route a pod on PORT (or update it).
    Set {
        /// The port the pod is attached to.
        port: String,
        /// The pod's interface MAC.
        #[arg(long)]
        mac: api::MacAddr,
        /// The pod's IPv4 address (repeatable).
        #[arg(long = "ip", required = true)]
        ips: Vec<std::net::Ipv4Addr>,
        /// NAMESPACE/NAME of the pod, for display.
        #[arg(long)]
        pod: Option<String>,
    },
    /// Turn PORT back into a bridge port.
    Del {
        /// Port name.
        port: String,
    },
    /// List the routed pods.
    List,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum PortCmd {
    /// Attach a port to the switch.
    Add {
        /// Port name.
        name: String,
        /// How the port is attached.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// vhost-user socket path (vhost kinds).
        #[arg(long, value_name = "SOCK")]
        path: Option<String>,
        /// Kernel interface name (tap, af-packet, af-xdp; defaults to the
        /// port name).
        #[arg(long, value_name = "IFNAME")]
        iface: Option<String>,
        /// PCI address of a NIC bound to a DPDK driver (pci; e.g.
        /// 0000:3b:00.0). vswitchd must have been started with
        /// `--port NAME=pci:ADDR` for it: only devices named at start are probed.
        #[arg(long, value_name = "ADDR")]
        pci: Option<String>,
    },
    /// Detach a port.
    Del {
        /// Port name.
        name: String,
    },
    /// List the ports.
    List,
}

/// `--kind` values; mirrors [`api::PortKind`].
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindArg {
    VhostServer,
    VhostClient,
    Tap,
    AfPacket,
    AfXdp,
    Pci,
}

impl From<KindArg> for api::PortKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::VhostServer => api::PortKind::VhostServer,
            KindArg::VhostClient => api::PortKind::VhostClient,
            KindArg::Tap => api::PortKind::Tap,
            KindArg::AfPacket => api::PortKind::AfPacket,
            KindArg::AfXdp => api::PortKind::AfXdp,
            KindArg::Pci => api::PortKind::Pci,
        }
    }
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct StatsArgs {
    /// Print live per-port packet rates every interval instead of counters.
    #[arg(long)]
    pub rate: bool,
    /// Seconds between two samples (fractions allowed).
    #[arg(
        long,
        value_name = "SECS",
        default_value = "1",
        value_parser = parse_interval,
        requires = "rate"
    )]
    pub interval: Duration,
    /// Stop after N intervals (default: run until Ctrl-C).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), requires = "rate")]
    pub count: Option<u64>,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum FdbCmd {
    /// List learned MACs, sorted by port then MAC.
    Show,
    /// Forget learned MACs: all of them, or those behind one port.
    Flush {
        /// Only the MACs learned on this port.
        #[arg(long, value_name = "NAME")]
        port: Option<String>,
    },
    /// Set the aging time of learned MACs.
    Aging {
        /// Seconds a MAC stays without being seen.
        seconds: u32,
    },
}

/// A positive, finite number of seconds, at least a millisecond.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(format!(
            "'{s}': the interval must be between 0.001 and 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        let mut v = vec!["vsctl"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn parse_err(args: &[&str]) -> ErrorKind {
        let mut v = vec!["vsctl"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v) {
            Ok(c) => panic!("{args:?} parsed as {c:?}"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_defaults_and_positions() {
        let c = parse(&["status"]);
        assert_eq!(c.command, Command::Status);
        assert!(!c.json);
        if std::env::var_os("VSWITCH_SOCKET").is_none() {
            assert_eq!(c.socket, PathBuf::from(api::DEFAULT_SOCKET));
        }
        let c = parse(&["--socket", "/tmp/x.sock", "--json", "status"]);
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert!(c.json);
        // Global options may follow the subcommand too.
        let c = parse(&["port", "list", "--json", "--socket=/tmp/y.sock"]);
        assert_eq!(c.command, Command::Port(PortCmd::List));
        assert_eq!(c.socket, PathBuf::from("/tmp/y.sock"));
        assert!(c.json);
    }

    #[test]
    fn port_add() {
        let c = parse(&[
            "port",
            "add",
            "p0",
            "--kind",
            "vhost-server",
            "--path",
            "/run/p0.sock",
        ]);
        assert_eq!(
            c.command,
            Command::Port(PortCmd::Add {
                name: "p0".into(),
                kind: KindArg::VhostServer,
                path: Some("/run/p0.sock".into()),
                iface: None,
                pci: None,
            })
        );
        let c = parse(&["port", "add", "t0", "--kind=tap", "--iface", "vs-t0"]);
        assert_eq!(
            c.command,
            Command::Port(PortCmd::Add {
                name: "t0".into(),
                kind: KindArg::Tap,
                path: None,
                iface: Some("vs-t0".into()),
                pci: None,
            })
        );
        let c = parse(&["port", "add", "up", "--kind", "af-xdp", "--iface", "eth1"]);
        assert_eq!(
            c.command,
            Command::Port(PortCmd::Add {
                name: "up".into(),
                kind: KindArg::AfXdp,
                path: None,
                iface: Some("eth1".into()),
                pci: None,
            })
        );
        let c = parse(&[
            "port",
            "add",
            "nic",
            "--kind",
            "pci",
            "--pci",
            "0000:3b:00.0",
        ]);
        assert_eq!(
            c.command,
            Command::Port(PortCmd::Add {
                name: "nic".into(),
                kind: KindArg::Pci,
                path: None,
                iface: None,
                pci: Some("0000:3b:00.0".into()),
            })
        );
        let c = parse(&[
            "port",
            "add",
            "c0",
            "--kind",
            "vhost-client",
            "--path",
            "/x",
        ]);
        assert!(matches!(
            c.command,
            Command::Port(PortCmd::Add {
                kind: KindArg::VhostClient,
                ..
            })
        ));
        assert_eq!(
            parse_err(&["port", "add", "p0"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["port", "add", "p0", "--kind", "ethernet"]),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            parse_err(&["port", "add", "--kind", "tap"]),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn kinds_map_onto_the_api() {
        for (arg, kind) in [
            (KindArg::VhostServer, api::PortKind::VhostServer),
            (KindArg::VhostClient, api::PortKind::VhostClient),
            (KindArg::Tap, api::PortKind::Tap),
            (KindArg::AfPacket, api::PortKind::AfPacket),
            (KindArg::AfXdp, api::PortKind::AfXdp),
            (KindArg::Pci, api::PortKind::Pci),
        ] {
            assert_eq!(api::PortKind::from(arg), kind);
            // The clap spelling is the wire spelling.
            let v = arg.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(v.as_deref(), Some(kind.as_str()));
        }
    }

    #[test]
    fn port_del_and_list() {
        assert_eq!(
            parse(&["port", "del", "p0"]).command,
            Command::Port(PortCmd::Del { name: "p0".into() })
        );
        assert_eq!(
            parse(&["port", "list"]).command,
            Command::Port(PortCmd::List)
        );
        assert_eq!(
            parse_err(&["port", "del"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["port"]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn stats() {
        let c = parse(&["stats"]);
        assert_eq!(
            c.command,
            Command::Stats(StatsArgs {
                rate: false,
                interval: Duration::from_secs(1),
                count: None
            })
        );
        let c = parse(&["stats", "--rate"]);
        assert_eq!(
            c.command,
            Command::Stats(StatsArgs {
                rate: true,
                interval: Duration::from_secs(1),
                count: None
            })
        );
        let c = parse(&["stats", "--rate", "--interval", "0.5", "--count", "3"]);
        assert_eq!(
            c.command,
            Command::Stats(StatsArgs {
                rate: true,
                interval: Duration::from_millis(500),
                count: Some(3)
            })
        );
        assert_eq!(
            parse_err(&["stats", "--interval", "2"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["stats", "--count", "2"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["stats", "--rate", "--count", "0"]),
            ErrorKind::ValueValidation
        );
        for bad in ["0", "-1", "0.0001", "abc", "inf", "NaN", "1e9"] {
            let arg = format!("--interval={bad}");
            assert_eq!(
                parse_err(&["stats", "--rate", &arg]),
                ErrorKind::ValueValidation,
                "{bad}"
            );
        }
    }

    #[test]
    fn fdb() {
        assert_eq!(parse(&["fdb", "show"]).command, Command::Fdb(FdbCmd::Show));
        assert_eq!(
            parse(&["fdb", "flush"]).command,
            Command::Fdb(FdbCmd::Flush { port: None })
        );
        assert_eq!(
            parse(&["fdb", "flush", "--port", "p1"]).command,
            Command::Fdb(FdbCmd::Flush {
                port: Some("p1".into())
            })
        );
        assert_eq!(
            parse(&["fdb", "aging", "300"]).command,
            Command::Fdb(FdbCmd::Aging { seconds: 300 })
        );
        assert_eq!(
            parse_err(&["fdb", "aging"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["fdb", "aging", "-5"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse_err(&["fdb", "aging", "soon"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn apply_delete_get_and_flows() {
        assert_eq!(
            parse(&["apply", "-f", "x.yaml"]).command,
            Command::Apply {
                file: "x.yaml".into()
            }
        );
        assert_eq!(
            parse(&["delete", "--filename=-", "--ignore-not-found"]).command,
            Command::Delete {
                file: "-".into(),
                ignore_not_found: true
            }
        );
        assert_eq!(parse_err(&["delete"]), ErrorKind::MissingRequiredArgument);
        for (word, what) in [
            ("policies", GetWhat::Policies),
            ("namespaces", GetWhat::Namespaces),
            ("conntrack", GetWhat::Conntrack),
            ("nat", GetWhat::Nat),
        ] {
            assert_eq!(
                parse(&["get", word]).command,
                Command::Get {
                    what,
                    pod: None,
                    state: None,
                    limit: 0,
                    output: Output::Table
                }
            );
        }
        assert_eq!(
            parse(&[
                "get",
                "conntrack",
                "--pod",
                "shop/web-0",
                "--state",
                "established"
            ])
            .command,
            Command::Get {
                what: GetWhat::Conntrack,
                pod: Some("shop/web-0".into()),
                state: Some("established".into()),
                limit: 0,
                output: Output::Table
            }
        );
        assert_eq!(
            parse(&["get", "policies", "-o", "yaml"]).command,
            Command::Get {
                what: GetWhat::Policies,
                pod: None,
                state: None,
                limit: 0,
                output: Output::Yaml
            }
        );
        assert_eq!(
            parse(&["flush", "conntrack", "--pod", "shop/web-0"]).command,
            Command::Flush {
                what: FlushWhat::Conntrack,
                pod: Some("shop/web-0".into())
            }
        );
        assert_eq!(
            parse(&["capture", "a", "shop/b", "--filter", "tcp", "-c", "5", "-w", "-"]).command,
            Command::Capture(CaptureArgs {
                ports: vec!["a".into(), "shop/b".into()],
                write: "-".into(),
                filter: Some("tcp".into()),
                count: Some(5),
                duration: None,
                snaplen: 0
            })
        );
        assert_eq!(
            parse_err(&["capture", "a"]),
            ErrorKind::MissingRequiredArgument
        );
        let Command::Trace(t) = parse(&["trace", "shop/b", "--filter", "tcp", "-c", "3"]).command
        else {
            panic!("not a trace");
        };
        assert_eq!((t.ports.len(), t.count, t.inject), (1, 3, false));
        let Command::Trace(t) = parse(&[
            "trace",
            "--inject",
            "--from",
            "shop/b",
            "--to",
            "10.96.0.10",
            "--proto",
            "udp",
            "--dport",
            "53",
        ])
        .command
        else {
            panic!("not a trace");
        };
        assert_eq!(
            (t.from.as_deref(), t.to, t.proto.as_str(), t.dport),
            (
                Some("shop/b"),
                Some("10.96.0.10".parse().expect("ip")),
                "udp",
                53
            )
        );
        assert_eq!(
            parse_err(&["trace", "--inject", "--from", "shop/b"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["trace", "a", "--inject", "--from", "b", "--to", "10.0.0.1"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse_err(&["trace", "--to", "10.0.0.1"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["flows", "log"]).command,
            Command::Flows(FlowsCmd::Log(FlowLogArgs {
                after: 0,
                follow: false
            }))
        );
        let c = parse(&["flows", "log", "--after", "41", "--follow", "--json"]);
        assert!(c.json);
        assert_eq!(
            c.command,
            Command::Flows(FlowsCmd::Log(FlowLogArgs {
                after: 41,
                follow: true
            }))
        );
        assert_eq!(
            parse_err(&["flows", "log", "--after", "-1"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse_err(&["flows", "log", "--after", "x"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn status_and_unknown() {
        assert_eq!(parse(&["status"]).command, Command::Status);
        assert_eq!(parse_err(&["reboot"]), ErrorKind::InvalidSubcommand);
        assert_eq!(
            parse_err(&[]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }
}
