//! ipvsadm's command line: parsed with clap, checked with ipvsadm's rules
//! (one command, which options each command takes, value ranges), and
//! turned into what lvsadm should do.
//!
//! Errors carry ipvsadm's wording where ipvsadm has the same error; lvsadm's
//! own limits (numeric addresses only, features lvsd lacks) say so plainly.

use crate::format::Format;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, ColorChoice, Command as Cli};
use lvsd_proto::{DestSpec, Method, Op, Protocol, ServiceKey, ServiceSpec, Timeouts, MAX_TIMEOUT};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Scheduler of a service added without -s (ipvsadm's DEF_SCHED).
pub const DEFAULT_SCHEDULER: &str = "wlc";
/// Persistence timeout of -p without a value, in seconds.
pub const DEFAULT_PERSISTENT_TIMEOUT: u32 = 300;
/// Weight of a destination added without -w.
pub const DEFAULT_WEIGHT: u32 = 1;
const MAX_WEIGHT: u32 = 65_535;
const MAX_THRESHOLD: u32 = 0x7fff_ffff;

/// A command line lvsadm will not run; the process exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// Printed bare on stderr, as ipvsadm's fail() does; may be empty.
    pub message: String,
    /// Adds ipvsadm's "Try ... -h" line.
    pub try_help: bool,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
            try_help: false,
        }
    }

    /// ipvsadm's exit status for it: 255 where ipvsadm says "Try ... -h"
    /// (no command, and popt's errors: it returns -1), 2 for the rest (its
    /// `fail(2, ...)`).
    pub fn exit_code(&self) -> i32 {
        if self.try_help {
            255
        } else {
            2
        }
    }

    fn try_help(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
            try_help: true,
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if self.try_help {
            if !self.message.is_empty() {
                f.write_str("\n")?;
            }
            f.write_str("Try `lvsadm -h' or 'lvsadm --help' for more information.")?;
        }
        Ok(())
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `--socket PATH`, when given.
    pub socket: Option<String>,
    pub action: Action,
}

/// What lvsadm is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Help,
    Version,
    List {
        what: ListWhat,
        format: Format,
    },
    /// -S: print the rules as ipvsadm command lines.
    Save,
    /// -R: read -S lines from stdin and apply them as one batch.
    Restore,
    /// --status: lvsd's per-shard counters.
    Status,
    /// A change sent as it is.
    Change(Op),
}

/// Which listing -L asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListWhat {
    All,
    Service(ServiceKey),
    /// -c
    Conns,
    /// --timeout
    Timeouts,
    /// --daemon: lvsd has no sync daemon, so this prints nothing, as
    /// ipvsadm does when none runs.
    Daemon,
}

/// ipvsadm's commands, named as its messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    AddService,
    EditService,
    DeleteService,
    Clear,
    List,
    AddServer,
    DeleteServer,
    EditServer,
    Set,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
    Status,
    Help,
    Version,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::AddService => "add-service",
            Cmd::EditService => "edit-service",
            Cmd::DeleteService => "delete-service",
            Cmd::Clear => "flush",
            Cmd::List => "list",
            Cmd::AddServer => "add-server",
            Cmd::DeleteServer => "delete-server",
            Cmd::EditServer => "edit-server",
            Cmd::Set => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::Status => "status",
            Cmd::Help => "help",
            Cmd::Version => "version",
        }
    }
}

/// ipvsadm's options, in the order its checks report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    McastInterface,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNoCsum,
    TunCsum,
    TunRemCsum,
}

impl Opt {
    const ALL: [Opt; 34] = [
        Opt::Numeric,
        Opt::Connection,
        Opt::Service,
        Opt::Scheduler,
        Opt::Persistent,
        Opt::Netmask,
        Opt::Server,
        Opt::Forward,
        Opt::Weight,
        Opt::UThreshold,
        Opt::LThreshold,
        Opt::McastInterface,
        Opt::Timeout,
        Opt::Daemon,
        Opt::Stats,
        Opt::Rate,
        Opt::Thresholds,
        Opt::PersistentConn,
        Opt::NoSort,
        Opt::SyncId,
        Opt::Exact,
        Opt::Ops,
        Opt::Pe,
        Opt::SchedFlags,
        Opt::McastGroup,
        Opt::McastPort,
        Opt::McastTtl,
        Opt::SyncMaxlen,
        Opt::TunInfo,
        Opt::TunType,
        Opt::TunPort,
        Opt::TunNoCsum,
        Opt::TunCsum,
        Opt::TunRemCsum,
    ];

    fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::McastInterface => "mcast-interface",
            Opt::Timeout => "timeout",
            Opt::Daemon => "daemon",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::NoSort => "nosort",
            Opt::SyncId => "syncid",
            Opt::Exact => "exact",
            Opt::Ops => "ops",
            Opt::Pe => "pe",
            Opt::SchedFlags => "sched-flags",
            Opt::McastGroup => "mcast-group",
            Opt::McastPort => "mcast-port",
            Opt::McastTtl => "mcast-ttl",
            Opt::SyncMaxlen => "sync-maxlen",
            Opt::TunInfo => "tun-info",
            Opt::TunType => "tun-type",
            Opt::TunPort => "tun-port",
            Opt::TunNoCsum => "tun-nocsum",
            Opt::TunCsum => "tun-csum",
            Opt::TunRemCsum => "tun-remcsum",
        }
    }

    fn bit(self) -> u64 {
        1u64 << (self as u32)
    }
}

/// How a command treats an option (ipvsadm's commands_v_options table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Required,
    Optional,
    /// At most one option of this kind per command.
    OneOf,
    Illegal,
}

fn rule(cmd: Cmd, opt: Opt) -> Rule {
    use Opt::*;
    match cmd {
        Cmd::AddService | Cmd::EditService => match opt {
            Service => Rule::Required,
            Scheduler | Persistent | Netmask | Ops | Pe | SchedFlags => Rule::Optional,
            _ => Rule::Illegal,
        },
        Cmd::DeleteService => match opt {
            Service => Rule::Required,
            _ => Rule::Illegal,
        },
        Cmd::List => match opt {
            Connection | Service | Timeout | Daemon => Rule::OneOf,
            Numeric | Stats | Rate | Thresholds | PersistentConn | NoSort | SyncId | Exact
            | TunInfo => Rule::Optional,
            _ => Rule::Illegal,
        },
        Cmd::AddServer | Cmd::EditServer => match opt {
            Service | Server => Rule::Required,
            Forward | Weight | UThreshold | LThreshold | TunType | TunPort | TunNoCsum
            | TunCsum | TunRemCsum => Rule::Optional,
            _ => Rule::Illegal,
        },
        Cmd::DeleteServer => match opt {
            Service | Server => Rule::Required,
            _ => Rule::Illegal,
        },
        Cmd::StartDaemon => match opt {
            McastInterface | SyncId | McastGroup | McastPort | McastTtl | SyncMaxlen => {
                Rule::Optional
            }
            _ => Rule::Illegal,
        },
        Cmd::StopDaemon => match opt {
            SyncId => Rule::Optional,
            _ => Rule::Illegal,
        },
        Cmd::Save => match opt {
            Numeric => Rule::Optional,
            _ => Rule::Illegal,
        },
        Cmd::Zero => match opt {
            Service => Rule::Optional,
            _ => Rule::Illegal,
        },
        Cmd::Clear | Cmd::Set | Cmd::Restore | Cmd::Status | Cmd::Help | Cmd::Version => {
            Rule::Illegal
        }
    }
}

/// ipvsadm's generic_opt_check: the first offence in option order wins.
fn check_options(cmd: Cmd, given: u64) -> Result<(), UsageError> {
    let mut one_of: Option<Opt> = None;
    for opt in Opt::ALL {
        let present = given & opt.bit() != 0;
        match (rule(cmd, opt), present) {
            (Rule::Required, false) => {
                return Err(UsageError::new(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    opt.name(),
                    cmd.name()
                )))
            }
            (Rule::Illegal, true) => {
                return Err(UsageError::new(format!(
                    "Illegal '{}' option with the '{}' command",
                    opt.name(),
                    cmd.name()
                )))
            }
            (Rule::OneOf, true) => match one_of {
                None => one_of = Some(opt),
                Some(first) => {
                    return Err(UsageError::new(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        opt.name(),
                        first.name(),
                        cmd.name()
                    )))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// Flag arguments that select a command, by clap id.
const COMMAND_FLAGS: &[(&str, Cmd)] = &[
    ("add-service", Cmd::AddService),
    ("edit-service", Cmd::EditService),
    ("delete-service", Cmd::DeleteService),
    ("clear", Cmd::Clear),
    ("list", Cmd::List),
    ("zero", Cmd::Zero),
    ("add-server", Cmd::AddServer),
    ("edit-server", Cmd::EditServer),
    ("delete-server", Cmd::DeleteServer),
    ("set", Cmd::Set),
    ("cmd-help", Cmd::Help),
    ("cmd-version", Cmd::Version),
    ("restore", Cmd::Restore),
    ("save", Cmd::Save),
    ("status", Cmd::Status),
];

/// Commands that take a value, by clap id.
const COMMAND_VALUES: &[(&str, Cmd)] = &[
    ("start-daemon", Cmd::StartDaemon),
    ("stop-daemon", Cmd::StopDaemon),
];

/// Flag options and the ipvsadm option each one sets, by clap id.
const OPTION_FLAGS: &[(&str, Opt)] = &[
    ("masquerading", Opt::Forward),
    ("ipip", Opt::Forward),
    ("gatewaying", Opt::Forward),
    ("numeric", Opt::Numeric),
    ("connection", Opt::Connection),
    ("timeout", Opt::Timeout),
    ("daemon", Opt::Daemon),
    ("stats", Opt::Stats),
    ("rate", Opt::Rate),
    ("thresholds", Opt::Thresholds),
    ("persistent-conn", Opt::PersistentConn),
    ("nosort", Opt::NoSort),
    ("exact", Opt::Exact),
    ("ops", Opt::Ops),
    ("tun-info", Opt::TunInfo),
    ("tun-nocsum", Opt::TunNoCsum),
    ("tun-csum", Opt::TunCsum),
    ("tun-remcsum", Opt::TunRemCsum),
];

/// Options with a value and the ipvsadm option each one sets, by clap id.
const OPTION_VALUES: &[(&str, Opt)] = &[
    ("tcp-service", Opt::Service),
    ("udp-service", Opt::Service),
    ("sctp-service", Opt::Service),
    ("fwmark-service", Opt::Service),
    ("scheduler", Opt::Scheduler),
    ("persistent", Opt::Persistent),
    ("netmask", Opt::Netmask),
    ("real-server", Opt::Server),
    ("weight", Opt::Weight),
    ("u-threshold", Opt::UThreshold),
    ("l-threshold", Opt::LThreshold),
    ("mcast-interface", Opt::McastInterface),
    ("syncid", Opt::SyncId),
    ("pe", Opt::Pe),
    ("sched-flags", Opt::SchedFlags),
    ("mcast-group", Opt::McastGroup),
    ("mcast-port", Opt::McastPort),
    ("mcast-ttl", Opt::McastTtl),
    ("sync-maxlen", Opt::SyncMaxlen),
    ("tun-type", Opt::TunType),
    ("tun-port", Opt::TunPort),
];

fn flag(id: &'static str, short: Option<char>) -> Arg {
    let arg = Arg::new(id).long(id).action(ArgAction::Count);
    match short {
        Some(c) => arg.short(c),
        None => arg,
    }
}

fn valued(id: &'static str, short: Option<char>) -> Arg {
    // Like popt, a required value is taken even when it starts with '-',
    // so "-w -1" reports a bad weight rather than an unknown option.
    let arg = Arg::new(id)
        .long(id)
        .action(ArgAction::Append)
        .num_args(1)
        .allow_hyphen_values(true);
    match short {
        Some(c) => arg.short(c),
        None => arg,
    }
}

/// The clap grammar: every ipvsadm option (so ipvsadm command lines are
/// recognised even where lvsd lacks the feature) plus --socket and --status.
fn cli() -> Cli {
    Cli::new("lvsadm")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .color(ColorChoice::Never)
        .args([
            flag("add-service", Some('A')),
            flag("edit-service", Some('E')),
            flag("delete-service", Some('D')),
            flag("clear", Some('C')),
            flag("list", Some('L')).short_alias('l'),
            flag("zero", Some('Z')),
            flag("add-server", Some('a')),
            flag("edit-server", Some('e')),
            flag("delete-server", Some('d')),
            flag("set", None),
            Arg::new("cmd-help")
                .short('h')
                .long("help")
                .action(ArgAction::Count),
            Arg::new("cmd-version")
                .short('v')
                .long("version")
                .action(ArgAction::Count),
            flag("restore", Some('R')),
            flag("save", Some('S')),
            flag("status", None),
            valued("start-daemon", None),
            valued("stop-daemon", None),
            valued("tcp-service", Some('t')),
            valued("udp-service", Some('u')),
            valued("sctp-service", None),
            valued("fwmark-service", Some('f')),
            valued("scheduler", Some('s')),
            // -p takes its timeout only when one follows, as popt's
            // optional arguments.
            Arg::new("persistent")
                .short('p')
                .long("persistent")
                .action(ArgAction::Append)
                .num_args(0..=1),
            valued("netmask", Some('M')),
            valued("real-server", Some('r')),
            flag("masquerading", Some('m')),
            flag("ipip", Some('i')),
            flag("gatewaying", Some('g')),
            valued("weight", Some('w')),
            valued("u-threshold", Some('x')),
            valued("l-threshold", Some('y')),
            flag("numeric", Some('n')),
            flag("connection", Some('c')),
            valued("mcast-interface", None),
            valued("syncid", None),
            flag("timeout", None),
            flag("daemon", None),
            flag("stats", None),
            flag("rate", None),
            flag("thresholds", None),
            flag("persistent-conn", None),
            flag("nosort", None),
            flag("sort", None),
            flag("exact", Some('X')),
            flag("ipv6", Some('6')),
            flag("ops", Some('o')),
            valued("pe", None),
            valued("sched-flags", Some('b')),
            valued("mcast-group", None),
            valued("mcast-port", None),
            valued("mcast-ttl", None),
            valued("sync-maxlen", None),
            flag("tun-info", None),
            valued("tun-type", None),
            valued("tun-port", None),
            flag("tun-nocsum", None),
            flag("tun-csum", None),
            flag("tun-remcsum", None),
            valued("socket", None),
            Arg::new("args").action(ArgAction::Append).num_args(0..),
        ])
}

/// Turns clap's complaint into one line in ipvsadm's manner: popt's words
/// for an unknown option and a missing value (`--bogus: unknown option`),
/// clap's first line for anything else.
fn clap_error(err: &clap::Error) -> UsageError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => Some(a.split_whitespace().next().unwrap_or(a).to_string()),
        _ => None,
    };
    let popt = match (err.kind(), arg) {
        (ErrorKind::UnknownArgument, Some(a)) => Some(format!("{a}: unknown option")),
        (ErrorKind::InvalidValue, Some(a)) if err.to_string().contains("a value is required") => {
            Some(format!("{a}: missing argument"))
        }
        _ => None,
    };
    let text = popt.unwrap_or_else(|| {
        let rendered = err.render().to_string();
        let first = rendered.lines().next().unwrap_or("bad command line");
        first.strip_prefix("error: ").unwrap_or(first).to_string()
    });
    UsageError::try_help(text)
}

fn flag_count(m: &ArgMatches, id: &str) -> usize {
    usize::from(m.get_count(id))
}

fn value_count(m: &ArgMatches, id: &str) -> usize {
    m.get_occurrences::<String>(id).map_or(0, Iterator::count)
}

/// The value of an option given at most once (duplicates are refused
/// before this is used).
fn value<'a>(m: &'a ArgMatches, id: &str) -> Option<&'a str> {
    m.get_one::<String>(id).map(String::as_str)
}

/// ipvsadm's string_to_number: a whole decimal number within [min, max].
fn number(text: &str, min: u32, max: u32) -> Option<u32> {
    let n: i64 = text.trim_start().parse().ok()?;
    let n = u32::try_from(n).ok()?;
    (min..=max).contains(&n).then_some(n)
}

fn timeout(text: &str, min: u32) -> Result<u32, UsageError> {
    number(text, min, MAX_TIMEOUT)
        .ok_or_else(|| UsageError::new(format!("invalid timeout value `{text}' specified")))
}

/// Why an address[:port] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrError {
    Malformed,
    /// A host or service name: lvsadm resolves nothing.
    Name,
}

/// ipvsadm's parse_service, numeric only: `a.b.c.d[:port]`,
/// `[v6addr]:port` or a bare v6 address. The port is None when absent.
fn parse_addr(text: &str) -> Result<(IpAddr, Option<u16>), AddrError> {
    let looks_like_name = |s: &str| s.chars().any(|c| c.is_ascii_alphabetic());
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddrError::Malformed);
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(AddrError::Malformed)?;
        let port = after.strip_prefix(':').ok_or(AddrError::Malformed)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| AddrError::Malformed)?;
        (IpAddr::V6(ip), Some(port))
    } else if let Ok(ip) = text.parse::<Ipv6Addr>() {
        (IpAddr::V6(ip), None)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        match host.parse::<Ipv4Addr>() {
            Ok(ip) => (IpAddr::V4(ip), port),
            Err(_) if looks_like_name(host) => return Err(AddrError::Name),
            Err(_) => return Err(AddrError::Malformed),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| AddrError::Malformed)?)
        }
        Some(p) if looks_like_name(p) => return Err(AddrError::Name),
        Some(_) => return Err(AddrError::Malformed),
    };
    Ok((host, port))
}

fn addr_error(what: &str, err: AddrError) -> UsageError {
    let mut msg = format!("illegal {what} address[:port] specified");
    if err == AddrError::Name {
        msg.push_str(" (lvsadm takes numeric addresses and ports only, no names)");
    }
    UsageError::new(msg)
}

/// ipvsadm's parse_sched_flags; lvsd has no scheduler flags, so valid ones
/// are refused afterwards.
fn check_sched_flags(scheduler: &str, flags: &str) -> Result<(), UsageError> {
    for flag in flags.split(',').filter(|f| !f.is_empty()) {
        let needs = match flag {
            "flag-1" | "flag-2" | "flag-3" => None,
            "sh-fallback" | "sh-port" => Some("sh"),
            "mh-fallback" | "mh-port" => Some("mh"),
            _ => return Err(UsageError::new(format!("invalid scheduler flag `{flag}'"))),
        };
        if needs.is_some_and(|s| s != scheduler) {
            return Err(UsageError::new(format!(
                "incompatible scheduler flag `{flag}'"
            )));
        }
    }
    Ok(())
}

/// Features of ipvsadm that lvsd does not have.
fn unsupported(what: &str) -> UsageError {
    UsageError::new(format!("{what} not supported by lvsd"))
}

/// Parses one ipvsadm command line (without the program name).
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    if args.is_empty() {
        // ipvsadm without arguments lists the table.
        return Ok(Invocation {
            socket: None,
            action: Action::List {
                what: ListWhat::All,
                format: Format::default(),
            },
        });
    }
    let m = cli()
        .try_get_matches_from(args)
        .map_err(|e| clap_error(&e))?;

    if value_count(&m, "socket") > 1 {
        return Err(UsageError::new("multiple 'socket' options specified"));
    }
    let socket = value(&m, "socket").map(str::to_string);

    // Exactly one command.
    let mut cmd: Option<Cmd> = None;
    let counts = COMMAND_FLAGS
        .iter()
        .map(|&(id, c)| (flag_count(&m, id), c))
        .chain(
            COMMAND_VALUES
                .iter()
                .map(|&(id, c)| (value_count(&m, id), c)),
        );
    for (n, c) in counts {
        if n == 0 {
            continue;
        }
        if n > 1 || cmd.is_some() {
            return Err(UsageError::new("multiple commands specified"));
        }
        cmd = Some(c);
    }
    let Some(cmd) = cmd else {
        // Only --socket: the no-argument listing, for that socket.
        let from_command_line =
            |id: &clap::Id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine);
        if m.ids()
            .filter(|id| from_command_line(id))
            .all(|id| id.as_str() == "socket")
        {
            return Ok(Invocation {
                socket,
                action: Action::List {
                    what: ListWhat::All,
                    format: Format::default(),
                },
            });
        }
        return Err(UsageError::try_help(""));
    };
    match cmd {
        Cmd::Help => {
            return Ok(Invocation {
                socket,
                action: Action::Help,
            })
        }
        Cmd::Version => {
            return Ok(Invocation {
                socket,
                action: Action::Version,
            })
        }
        _ => {}
    }

    // Each option at most once; -t/-u/-f are one option, so are -g/-i/-m.
    let mut given = 0u64;
    let uses = OPTION_FLAGS
        .iter()
        .map(|&(id, o)| (flag_count(&m, id), o))
        .chain(
            OPTION_VALUES
                .iter()
                .map(|&(id, o)| (value_count(&m, id), o)),
        );
    for (n, opt) in uses {
        if n == 0 {
            continue;
        }
        if n > 1 || given & opt.bit() != 0 {
            return Err(UsageError::new(format!(
                "multiple '{}' options specified",
                opt.name()
            )));
        }
        given |= opt.bit();
    }
    let has = |opt: Opt| given & opt.bit() != 0;

    // Values, checked as ipvsadm checks them while reading options.
    let service = if let Some(text) = value(&m, "tcp-service") {
        Some((Protocol::Tcp, text))
    } else {
        value(&m, "udp-service").map(|text| (Protocol::Udp, text))
    };
    let service = match service {
        Some((protocol, text)) => {
            let (ip, port) = parse_addr(text).map_err(|e| addr_error("virtual server", e))?;
            Some((protocol, ip, port))
        }
        None => None,
    };
    let scheduler = value(&m, "scheduler").unwrap_or("");
    let persistent = match m.get_occurrences::<String>("persistent") {
        Some(mut occ) => match occ.next().and_then(|mut values| values.next()) {
            Some(text) => Some(timeout(text, 1)?),
            None => Some(DEFAULT_PERSISTENT_TIMEOUT),
        },
        None => None,
    };
    let server = match value(&m, "real-server") {
        Some(text) => Some(parse_addr(text).map_err(|e| addr_error("real server", e))?),
        None => None,
    };
    let method = if flag_count(&m, "masquerading") > 0 {
        Method::Nat
    } else if flag_count(&m, "ipip") > 0 {
        Method::Tun
    } else {
        // Direct routing is ipvsadm's default.
        Method::Dr
    };
    let weight = match value(&m, "weight") {
        Some(text) => number(text, 0, MAX_WEIGHT)
            .ok_or_else(|| UsageError::new("illegal weight specified"))?,
        None => DEFAULT_WEIGHT,
    };
    let u_threshold = match value(&m, "u-threshold") {
        Some(text) => number(text, 0, MAX_THRESHOLD)
            .ok_or_else(|| UsageError::new("illegal u_threshold specified"))?,
        None => 0,
    };
    let l_threshold = match value(&m, "l-threshold") {
        Some(text) => number(text, 0, MAX_THRESHOLD)
            .ok_or_else(|| UsageError::new("illegal l_threshold specified"))?,
        None => 0,
    };
    if let Some(text) = value(&m, "syncid") {
        number(text, 0, 255).ok_or_else(|| UsageError::new("illegal syncid specified"))?;
    }
    let tun_type = value(&m, "tun-type");
    if let Some(t) = tun_type {
        if !matches!(t, "ipip" | "gue" | "gre") {
            return Err(UsageError::new("illegal tunnel type specified"));
        }
    }
    if let Some(text) = value(&m, "tun-port") {
        number(text, 1, 65_535).ok_or_else(|| UsageError::new("illegal tunnel port specified"))?;
    }

    // Positional arguments: the three --set timeouts, nothing else.
    let mut positional = m
        .get_many::<String>("args")
        .map(|v| v.map(String::as_str).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter();
    let set_timeouts = if cmd == Cmd::Set {
        match (positional.next(), positional.next(), positional.next()) {
            (Some(tcp), Some(fin), Some(udp)) => Some(Timeouts {
                tcp: timeout(tcp, 0)?,
                tcp_fin: timeout(fin, 0)?,
                udp: timeout(udp, 0)?,
            }),
            _ => return Err(UsageError::new("--set option requires 3 timeout values")),
        }
    } else {
        None
    };
    if let Some(extra) = positional.next() {
        return Err(UsageError::new(format!("unexpected argument {extra}")));
    }
    if let Some(flags) = value(&m, "sched-flags") {
        let sched = if scheduler.is_empty() {
            DEFAULT_SCHEDULER
        } else {
            scheduler
        };
        check_sched_flags(sched, flags)?;
    }

    check_options(cmd, given)?;

    // What ipvsadm can do and lvsd cannot.
    match cmd {
        Cmd::StartDaemon | Cmd::StopDaemon => {
            return Err(unsupported("the connection sync daemon is"))
        }
        _ => {}
    }
    if value_count(&m, "fwmark-service") > 0 {
        return Err(unsupported("firewall-mark services (-f) are"));
    }
    if value_count(&m, "sctp-service") > 0 {
        return Err(unsupported("SCTP services are"));
    }
    if flag_count(&m, "ipv6") > 0 {
        // Only meaningful after -f, which lvsd does not have either.
        return Err(UsageError::new("-6 used before -f"));
    }
    if has(Opt::Ops) {
        return Err(unsupported("one-packet scheduling (-o) is"));
    }
    if has(Opt::Pe) {
        return Err(unsupported("persistence engines (--pe) are"));
    }
    if has(Opt::SchedFlags) {
        return Err(unsupported("scheduler flags (-b) are"));
    }
    if let Some(mask) = value(&m, "netmask") {
        // A mask of a single address is the default and is accepted as a
        // no-op; coarser persistence granularity lvsd does not have.
        let v6 = matches!(service, Some((_, IpAddr::V6(_), _)));
        let single = if v6 {
            let bits = number(mask, 1, 128)
                .ok_or_else(|| UsageError::new("illegal ipv6 netmask specified"))?;
            bits == 128
        } else {
            let ip: Ipv4Addr = mask
                .parse()
                .map_err(|_| UsageError::new("illegal virtual server persistent mask specified"))?;
            ip == Ipv4Addr::BROADCAST
        };
        if !single {
            return Err(unsupported(
                "persistence granularity (-M) coarser than one address is",
            ));
        }
    }
    if let Some(t) = tun_type {
        if t != "ipip" {
            return Err(UsageError::new(format!(
                "tunnel type {t} not supported by lvsd, only ipip"
            )));
        }
    }

    let key = service.map(|(protocol, ip, port)| ServiceKey {
        protocol,
        addr: SocketAddr::new(ip, port.unwrap_or(0)),
    });
    let format = Format {
        stats: has(Opt::Stats),
        rate: has(Opt::Rate),
        thresholds: has(Opt::Thresholds),
        persistent_conn: has(Opt::PersistentConn),
        tun_info: has(Opt::TunInfo),
        exact: has(Opt::Exact),
        nosort: has(Opt::NoSort),
    };

    let action = match cmd {
        Cmd::AddService | Cmd::EditService => {
            let key = key.ok_or_else(|| UsageError::new("missing service"))?;
            if key.addr.port() == 0 && persistent.is_none() {
                return Err(UsageError::new(
                    "Zero port specified for non-persistent service",
                ));
            }
            let spec = ServiceSpec {
                key,
                scheduler: if scheduler.is_empty() {
                    DEFAULT_SCHEDULER.to_string()
                } else {
                    scheduler.to_string()
                },
                persistent,
            };
            Action::Change(if cmd == Cmd::AddService {
                Op::AddService { service: spec }
            } else {
                Op::EditService { service: spec }
            })
        }
        Cmd::DeleteService => Action::Change(Op::DeleteService {
            service: key.ok_or_else(|| UsageError::new("missing service"))?,
        }),
        Cmd::Clear => Action::Change(Op::Clear),
        Cmd::Zero => Action::Change(Op::Zero { service: key }),
        Cmd::Set => Action::Change(Op::SetTimeouts {
            timeouts: set_timeouts.ok_or_else(|| UsageError::new("missing timeouts"))?,
        }),
        Cmd::AddServer | Cmd::EditServer | Cmd::DeleteServer => {
            let service = key.ok_or_else(|| UsageError::new("missing service"))?;
            let (ip, port) = server.ok_or_else(|| UsageError::new("missing real server"))?;
            // The server port defaults to the service port; direct routing
            // and tunnels cannot change the port, so there it is always the
            // service port.
            let mut port = port.unwrap_or(service.addr.port());
            if cmd == Cmd::DeleteServer {
                Action::Change(Op::DeleteDest {
                    service,
                    dest: SocketAddr::new(ip, port),
                })
            } else {
                if matches!(method, Method::Dr | Method::Tun) {
                    port = service.addr.port();
                }
                if ip.is_ipv4() != service.addr.is_ipv4() && method != Method::Tun {
                    return Err(UsageError::new(
                        "Different address family is allowed only for tunneling servers",
                    ));
                }
                let tunnel_opts = [
                    Opt::TunType,
                    Opt::TunPort,
                    Opt::TunNoCsum,
                    Opt::TunCsum,
                    Opt::TunRemCsum,
                ];
                if method != Method::Tun && tunnel_opts.iter().any(|&o| has(o)) {
                    return Err(UsageError::new(
                        "Tunnel options conflict with forward method",
                    ));
                }
                // An ipip tunnel takes none of the GUE/GRE options.
                if let Some(&o) = tunnel_opts[1..].iter().find(|&&o| has(o)) {
                    return Err(UsageError::new(format!(
                        "Illegal '{}' option with the 'ipip' tunnel type",
                        o.name()
                    )));
                }
                let dest = DestSpec {
                    addr: SocketAddr::new(ip, port),
                    weight,
                    method,
                    u_threshold,
                    l_threshold,
                };
                Action::Change(if cmd == Cmd::AddServer {
                    Op::AddDest { service, dest }
                } else {
                    Op::EditDest { service, dest }
                })
            }
        }
        Cmd::List => {
            let conflict = (has(Opt::Connection) || has(Opt::Timeout) || has(Opt::Daemon))
                && (has(Opt::Stats) || has(Opt::Rate) || has(Opt::Thresholds))
                || (has(Opt::Timeout) || has(Opt::Daemon)) && has(Opt::PersistentConn);
            if conflict {
                return Err(UsageError::new("options conflicts in the list command"));
            }
            let what = if has(Opt::Connection) {
                ListWhat::Conns
            } else if let Some(k) = key {
                ListWhat::Service(k)
            } else if has(Opt::Timeout) {
                ListWhat::Timeouts
            } else if has(Opt::Daemon) {
                ListWhat::Daemon
            } else {
                ListWhat::All
            };
            Action::List { what, format }
        }
        Cmd::Save => Action::Save,
        Cmd::Restore => Action::Restore,
        Cmd::Status => Action::Status,
        Cmd::Help | Cmd::Version | Cmd::StartDaemon | Cmd::StopDaemon => {
            unreachable!("handled above")
        }
    };
    Ok(Invocation { socket, action })
}

/// `lvsadm -v`.
pub fn version_text() -> String {
    format!(
        "lvsadm v{} (ipvsadm command line for lvsd, IPVS v{})\n",
        env!("CARGO_PKG_VERSION"),
        crate::format::IPVS_VERSION
    )
}

/// `lvsadm -h`.
pub fn usage() -> String {
    format!(
        "{version}\
Usage:
  lvsadm -A|E virtual-service [-s scheduler] [-p [timeout]]
  lvsadm -D virtual-service
  lvsadm -C
  lvsadm -R
  lvsadm -S [-n]
  lvsadm -a|e virtual-service -r server-address [options]
  lvsadm -d virtual-service -r server-address
  lvsadm -L|l [virtual-service] [options]
  lvsadm -Z [virtual-service]
  lvsadm --set tcp tcpfin udp
  lvsadm --status
  lvsadm -h | -v
Each may add --socket PATH, or -H user@host to run on another machine.

Commands:
  --add-service     -A        add a virtual service
  --edit-service    -E        change a virtual service (unset fields reset)
  --delete-service  -D        delete a virtual service
  --clear           -C        delete every virtual service
  --restore         -R        apply -S lines read from stdin, all or none
  --save            -S        print the rules as -R input
  --add-server      -a        add a real server
  --edit-server     -e        change a real server (unset fields reset)
  --delete-server   -d        delete a real server
  --list            -L|-l     list the table
  --zero            -Z        zero the counters of one or all services
  --set tcp tcpfin udp        set connection timeouts (0 keeps a value)
  --status                    lvsd's per-shard frame counters and drops
  --help            -h        show this help
  --version         -v        show lvsadm's version

virtual-service:
  --tcp-service|-t service-address   a.b.c.d[:port] or [ipv6]:port
  --udp-service|-u service-address   a.b.c.d[:port] or [ipv6]:port

Options:
  --scheduler    -s scheduler         rr, wrr, lc or wlc; default {sched}
  --persistent   -p [timeout]         persistent service, default {persist} s
                                      (lvsd refuses it: not implemented yet)
  --real-server  -r server-address    a.b.c.d[:port], ipv6 or [ipv6]:port;
                                      the port defaults to the service's
  --gatewaying   -g                   direct routing (default)
  --ipip         -i                   IPIP tunnel
  --masquerading -m                   NAT
  --weight       -w weight            0..65535, default {weight}
  --u-threshold  -x uthreshold        upper connection threshold
  --l-threshold  -y lthreshold        lower connection threshold
  --connection   -c                   list the connection table
  --timeout                           list the timeouts
  --stats                             list counters
  --rate                              list rates
  --exact        -X                   exact numbers in --stats and --rate
  --thresholds                        list thresholds
  --persistent-conn                   list persistent connections
  --tun-info                          list tunnel types
  --nosort                            keep lvsd's order
  --sort                              sort (the default; does nothing)
  --numeric      -n                   numeric output (always, here)

lvsadm options:
  --socket PATH                       lvsd's admin socket; default
                                      $LVSD_SOCKET, else {socket}
  --host         -H user@host         run this lvsadm command line on
                                      that host through ssh

Addresses and ports are numeric: lvsadm resolves no names.
",
        version = version_text(),
        sched = DEFAULT_SCHEDULER,
        persist = DEFAULT_PERSISTENT_TIMEOUT,
        weight = DEFAULT_WEIGHT,
        socket = lvsd_proto::DEFAULT_SOCKET,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Invocation, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse(&args)
    }

    fn op(line: &str) -> Op {
        match parse_str(line) {
            Ok(Invocation {
                action: Action::Change(op),
                ..
            }) => op,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_str(line) {
            Err(e) => e.to_string(),
            Ok(inv) => panic!("{line}: parsed as {inv:?}"),
        }
    }

    fn key(p: Protocol, a: &str) -> ServiceKey {
        ServiceKey {
            protocol: p,
            addr: a.parse().unwrap(),
        }
    }

    fn list(line: &str) -> (ListWhat, Format) {
        match parse_str(line) {
            Ok(Invocation {
                action: Action::List { what, format },
                ..
            }) => (what, format),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn add_service_defaults_to_wlc() {
        assert_eq!(
            op("-A -t 198.19.0.100:80"),
            Op::AddService {
                service: ServiceSpec {
                    key: key(Protocol::Tcp, "198.19.0.100:80"),
                    scheduler: "wlc".into(),
                    persistent: None,
                }
            }
        );
    }

    #[test]
    fn add_service_with_scheduler_and_persistence() {
        assert_eq!(
            op("-A -t 198.19.0.100:80 -s wrr"),
            Op::AddService {
                service: ServiceSpec {
                    key: key(Protocol::Tcp, "198.19.0.100:80"),
                    scheduler: "wrr".into(),
                    persistent: None,
                }
            }
        );
        let spec = |p| ServiceSpec {
            key: key(Protocol::Udp, "[2001:db8::1]:53"),
            scheduler: "rr".into(),
            persistent: p,
        };
        assert_eq!(
            op("--add-service --udp-service [2001:db8::1]:53 --scheduler rr -p"),
            Op::AddService {
                service: spec(Some(300))
            }
        );
        assert_eq!(
            op("-A -u [2001:db8::1]:53 -p 60 -s rr"),
            Op::AddService {
                service: spec(Some(60))
            }
        );
        assert_eq!(
            op("-A -u [2001:db8::1]:53 -p -s rr"),
            Op::AddService {
                service: spec(Some(300))
            }
        );
        assert_eq!(
            op("-A -u [2001:db8::1]:53 -s rr --persistent=900"),
            Op::AddService {
                service: spec(Some(900))
            }
        );
    }

    #[test]
    fn edit_service_sets_every_field() {
        assert_eq!(
            op("-E -t 10.0.0.1:443"),
            Op::EditService {
                service: ServiceSpec {
                    key: key(Protocol::Tcp, "10.0.0.1:443"),
                    scheduler: "wlc".into(),
                    persistent: None,
                }
            }
        );
    }

    #[test]
    fn zero_port_needs_persistence() {
        assert_eq!(
            err("-A -t 10.0.0.1"),
            "Zero port specified for non-persistent service"
        );
        assert_eq!(
            err("-A -t 10.0.0.1:0"),
            "Zero port specified for non-persistent service"
        );
        assert_eq!(
            op("-A -t 10.0.0.1 -p"),
            Op::AddService {
                service: ServiceSpec {
                    key: key(Protocol::Tcp, "10.0.0.1:0"),
                    scheduler: "wlc".into(),
                    persistent: Some(300),
                }
            }
        );
        // A bare IPv6 address has no port either.
        assert_eq!(
            err("-A -u 2001:db8::1"),
            "Zero port specified for non-persistent service"
        );
    }

    #[test]
    fn delete_clear_zero_set() {
        assert_eq!(
            op("-D -u 10.0.0.1:53"),
            Op::DeleteService {
                service: key(Protocol::Udp, "10.0.0.1:53")
            }
        );
        assert_eq!(op("-C"), Op::Clear);
        assert_eq!(op("--clear"), Op::Clear);
        assert_eq!(op("-Z"), Op::Zero { service: None });
        assert_eq!(
            op("--zero -t 10.0.0.1:80"),
            Op::Zero {
                service: Some(key(Protocol::Tcp, "10.0.0.1:80"))
            }
        );
        assert_eq!(
            op("--set 900 120 300"),
            Op::SetTimeouts {
                timeouts: Timeouts {
                    tcp: 900,
                    tcp_fin: 120,
                    udp: 300
                }
            }
        );
        assert_eq!(
            op("--set 0 0 60"),
            Op::SetTimeouts {
                timeouts: Timeouts {
                    tcp: 0,
                    tcp_fin: 0,
                    udp: 60
                }
            }
        );
        assert_eq!(
            err("--set 900 120"),
            "--set option requires 3 timeout values"
        );
        assert_eq!(err("--set 900 120 300 4"), "unexpected argument 4");
        assert_eq!(
            err("--set 900 x 300"),
            "invalid timeout value `x' specified"
        );
        assert_eq!(
            err("--set 900 120 2678401"),
            "invalid timeout value `2678401' specified"
        );
    }

    fn dest(addr: &str, weight: u32, method: Method) -> DestSpec {
        DestSpec {
            addr: addr.parse().unwrap(),
            weight,
            method,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    #[test]
    fn add_server_nat_keeps_its_port() {
        assert_eq!(
            op("-a -t 198.19.0.100:80 -r 198.18.1.11:8080 -m -w 3"),
            Op::AddDest {
                service: key(Protocol::Tcp, "198.19.0.100:80"),
                dest: dest("198.18.1.11:8080", 3, Method::Nat),
            }
        );
        assert_eq!(
            op("-a -t 198.19.0.100:80 -r 198.18.1.11 -m"),
            Op::AddDest {
                service: key(Protocol::Tcp, "198.19.0.100:80"),
                dest: dest("198.18.1.11:80", 1, Method::Nat),
            }
        );
    }

    #[test]
    fn add_server_routed_or_tunneled_uses_service_port() {
        assert_eq!(
            op("-a -t 198.19.0.100:80 -r 198.18.1.11:8080"),
            Op::AddDest {
                service: key(Protocol::Tcp, "198.19.0.100:80"),
                dest: dest("198.18.1.11:80", 1, Method::Dr),
            }
        );
        assert_eq!(
            op("-a -u 198.19.0.100:53 -r 198.18.1.11:5353 -i -w 0"),
            Op::AddDest {
                service: key(Protocol::Udp, "198.19.0.100:53"),
                dest: dest("198.18.1.11:53", 0, Method::Tun),
            }
        );
        assert_eq!(
            op("--add-server --tcp-service 10.0.0.1:80 --real-server 10.1.0.1 --gatewaying --weight 65535"),
            Op::AddDest {
                service: key(Protocol::Tcp, "10.0.0.1:80"),
                dest: dest("10.1.0.1:80", 65535, Method::Dr),
            }
        );
    }

    #[test]
    fn edit_server_with_thresholds() {
        assert_eq!(
            op("-e -t 10.0.0.1:80 -r 10.1.0.1:8080 -m -x 100 -y 50"),
            Op::EditDest {
                service: key(Protocol::Tcp, "10.0.0.1:80"),
                dest: DestSpec {
                    addr: "10.1.0.1:8080".parse().unwrap(),
                    weight: 1,
                    method: Method::Nat,
                    u_threshold: 100,
                    l_threshold: 50,
                },
            }
        );
    }

    #[test]
    fn delete_server_port_defaults_to_service_port() {
        assert_eq!(
            op("-d -t 10.0.0.1:80 -r 10.1.0.1"),
            Op::DeleteDest {
                service: key(Protocol::Tcp, "10.0.0.1:80"),
                dest: "10.1.0.1:80".parse().unwrap(),
            }
        );
        assert_eq!(
            op("-d -t 10.0.0.1:80 -r 10.1.0.1:8080"),
            Op::DeleteDest {
                service: key(Protocol::Tcp, "10.0.0.1:80"),
                dest: "10.1.0.1:8080".parse().unwrap(),
            }
        );
        assert_eq!(
            op("-d -t [2001:db8::1]:80 -r [2001:db8::2]:81"),
            Op::DeleteDest {
                service: key(Protocol::Tcp, "[2001:db8::1]:80"),
                dest: "[2001:db8::2]:81".parse().unwrap(),
            }
        );
    }

    #[test]
    fn server_values_are_range_checked() {
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.1.0.1 -w 65536"),
            "illegal weight specified"
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.1.0.1 -w -1"),
            "illegal weight specified"
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.1.0.1 -x 2147483648"),
            "illegal u_threshold specified"
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.1.0.1 -y abc"),
            "illegal l_threshold specified"
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -m"),
            "Different address family is allowed only for tunneling servers"
        );
        assert!(matches!(
            op("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i"),
            Op::AddDest { .. }
        ));
    }

    #[test]
    fn list_forms() {
        for line in ["-L", "-l", "--list", "-L -n", "-Ln", "-ln", "-nL"] {
            assert_eq!(list(line), (ListWhat::All, Format::default()), "{line}");
        }
        let (what, fmt) = list("-L -n --stats");
        assert_eq!(what, ListWhat::All);
        assert!(fmt.stats && !fmt.rate);
        let (_, fmt) = list("-Ln --rate --exact --nosort");
        assert!(fmt.rate && fmt.exact && fmt.nosort);
        let (_, fmt) = list("-L -X --sort");
        assert!(fmt.exact && !fmt.nosort);
        assert_eq!(list("-L -c -n").0, ListWhat::Conns);
        assert_eq!(list("-Lcn").0, ListWhat::Conns);
        assert_eq!(list("-L --timeout").0, ListWhat::Timeouts);
        assert_eq!(list("-L --daemon").0, ListWhat::Daemon);
        assert_eq!(
            list("-L -t 10.0.0.1:80").0,
            ListWhat::Service(key(Protocol::Tcp, "10.0.0.1:80"))
        );
        assert_eq!(
            list("-Lnu 10.0.0.1:53").0,
            ListWhat::Service(key(Protocol::Udp, "10.0.0.1:53"))
        );
        let (_, fmt) = list("-L --thresholds --persistent-conn --tun-info");
        assert!(fmt.thresholds && fmt.persistent_conn && fmt.tun_info);
    }

    #[test]
    fn list_conflicts() {
        assert_eq!(
            err("-L -c -t 10.0.0.1:80"),
            "The option 'service-address' conflicts with the 'connection' option in the 'list' command"
        );
        assert_eq!(
            err("-L -c --stats"),
            "options conflicts in the list command"
        );
        assert_eq!(
            err("-L --timeout --persistent-conn"),
            "options conflicts in the list command"
        );
    }

    #[test]
    fn no_arguments_lists() {
        assert_eq!(
            parse(&[]).unwrap().action,
            Action::List {
                what: ListWhat::All,
                format: Format::default()
            }
        );
        let inv = parse_str("--socket /tmp/x.sock").unwrap();
        assert_eq!(inv.socket.as_deref(), Some("/tmp/x.sock"));
        assert!(matches!(inv.action, Action::List { .. }));
    }

    #[test]
    fn other_commands() {
        assert_eq!(parse_str("-S").unwrap().action, Action::Save);
        assert_eq!(parse_str("-S -n").unwrap().action, Action::Save);
        assert_eq!(parse_str("--save").unwrap().action, Action::Save);
        assert_eq!(parse_str("-R").unwrap().action, Action::Restore);
        assert_eq!(parse_str("--status").unwrap().action, Action::Status);
        assert_eq!(parse_str("-h").unwrap().action, Action::Help);
        assert_eq!(parse_str("--help").unwrap().action, Action::Help);
        assert_eq!(parse_str("-v").unwrap().action, Action::Version);
        let inv = parse_str("-L --socket /run/other.sock").unwrap();
        assert_eq!(inv.socket.as_deref(), Some("/run/other.sock"));
    }

    #[test]
    fn one_command_exactly() {
        assert_eq!(err("-L -S"), "multiple commands specified");
        assert_eq!(err("-A -A -t 1.2.3.4:80"), "multiple commands specified");
        assert_eq!(err("-Ll"), "multiple commands specified");
        let no_cmd = err("-n");
        assert!(no_cmd.starts_with("Try `lvsadm -h'"), "{no_cmd}");
        let no_cmd = err("-t 10.0.0.1:80");
        assert!(no_cmd.starts_with("Try `lvsadm -h'"), "{no_cmd}");
    }

    #[test]
    fn ipvsadm_option_table() {
        assert_eq!(
            err("-A -s rr"),
            "You need to supply the 'service-address' option for the 'add-service' command"
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80"),
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert_eq!(
            err("-A -n -t 10.0.0.1:80"),
            "Illegal 'numeric' option with the 'add-service' command"
        );
        assert_eq!(
            err("-D -t 10.0.0.1:80 -s rr"),
            "Illegal 'scheduler' option with the 'delete-service' command"
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.0.2 -s rr"),
            "Illegal 'scheduler' option with the 'add-server' command"
        );
        assert_eq!(
            err("-d -t 10.0.0.1:80 -r 10.0.0.2 -w 2"),
            "Illegal 'weight' option with the 'delete-server' command"
        );
        assert_eq!(
            err("-C -t 10.0.0.1:80"),
            "Illegal 'service-address' option with the 'flush' command"
        );
        assert_eq!(
            err("-S --stats"),
            "Illegal 'stats' option with the 'save' command"
        );
        assert_eq!(
            err("--status -n"),
            "Illegal 'numeric' option with the 'status' command"
        );
        assert_eq!(
            err("-A -t 10.0.0.1:80 -u 10.0.0.1:53"),
            "multiple 'service-address' options specified"
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.0.2 -m -g"),
            "multiple 'forwarding-method' options specified"
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.0.2 -w 1 -w 2"),
            "multiple 'weight' options specified"
        );
        assert_eq!(err("-L -n -n"), "multiple 'numeric' options specified");
        assert_eq!(err("-L foo"), "unexpected argument foo");
    }

    #[test]
    fn addresses() {
        let p = |s| parse_addr(s);
        assert_eq!(p("1.2.3.4:80"), Ok(("1.2.3.4".parse().unwrap(), Some(80))));
        assert_eq!(p("1.2.3.4"), Ok(("1.2.3.4".parse().unwrap(), None)));
        assert_eq!(p("1.2.3.4:0"), Ok(("1.2.3.4".parse().unwrap(), Some(0))));
        assert_eq!(p("[::1]:443"), Ok(("::1".parse().unwrap(), Some(443))));
        assert_eq!(p("2001:db8::5"), Ok(("2001:db8::5".parse().unwrap(), None)));
        for bad in [
            "",
            "80",
            "1.2.3.4:",
            "1.2.3.4:65536",
            "1.2.3.4:-1",
            "[::1]",
            "[::1]80",
            "[1.2.3.4]:80",
            "1.2.3:80",
            "1.2.3.4.5",
            "[::1]:",
        ] {
            assert_eq!(p(bad), Err(AddrError::Malformed), "{bad:?}");
        }
        for name in ["www.example.com:80", "localhost", "1.2.3.4:http"] {
            assert_eq!(p(name), Err(AddrError::Name), "{name:?}");
        }
        assert_eq!(
            err("-A -t www.example.com:80"),
            "illegal virtual server address[:port] specified (lvsadm takes numeric addresses and ports only, no names)"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:99999"),
            "illegal virtual server address[:port] specified"
        );
        assert_eq!(
            err("-a -t 1.2.3.4:80 -r 10.0.0.1:x80y"),
            "illegal real server address[:port] specified (lvsadm takes numeric addresses and ports only, no names)"
        );
    }

    #[test]
    fn persistent_timeout_range() {
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p 0"),
            "invalid timeout value `0' specified"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p 2678401"),
            "invalid timeout value `2678401' specified"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p 5 -p 6"),
            "multiple 'persistent' options specified"
        );
    }

    #[test]
    fn features_lvsd_lacks() {
        assert_eq!(
            err("-A -f 1 -s rr"),
            "firewall-mark services (-f) are not supported by lvsd"
        );
        assert_eq!(
            err("-A --sctp-service 1.2.3.4:80"),
            "SCTP services are not supported by lvsd"
        );
        assert_eq!(
            err("-A -u 1.2.3.4:53 -o"),
            "one-packet scheduling (-o) is not supported by lvsd"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p --pe sip"),
            "persistence engines (--pe) are not supported by lvsd"
        );
        assert_eq!(
            err("-A -u 1.2.3.4:53 -s sh -b sh-port"),
            "scheduler flags (-b) are not supported by lvsd"
        );
        assert_eq!(
            err("-A -u 1.2.3.4:53 -s rr -b sh-port"),
            "incompatible scheduler flag `sh-port'"
        );
        assert_eq!(
            err("-A -u 1.2.3.4:53 -b bogus"),
            "invalid scheduler flag `bogus'"
        );
        assert_eq!(
            err("--start-daemon master"),
            "the connection sync daemon is not supported by lvsd"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p -M 255.255.255.0"),
            "persistence granularity (-M) coarser than one address is not supported by lvsd"
        );
        assert!(matches!(
            op("-A -t 1.2.3.4:80 -p -M 255.255.255.255"),
            Op::AddService { .. }
        ));
        assert_eq!(
            err("-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gue --tun-port 6080"),
            "tunnel type gue not supported by lvsd, only ipip"
        );
        assert_eq!(
            err("-a -t 1.2.3.4:80 -r 10.0.0.1 -m --tun-type ipip"),
            "Tunnel options conflict with forward method"
        );
        assert_eq!(
            err("-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-csum"),
            "Illegal 'tun-csum' option with the 'ipip' tunnel type"
        );
        assert_eq!(
            err("-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type vxlan"),
            "illegal tunnel type specified"
        );
        assert!(matches!(
            op("-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type ipip"),
            Op::AddDest { .. }
        ));
    }

    #[test]
    fn unknown_options_are_usage_errors() {
        // popt's words, as ipvsadm prints them.
        let e = parse_str("-L --bogus").unwrap_err();
        assert!(e.try_help);
        assert_eq!(e.message, "--bogus: unknown option");
        let e = parse_str("-A -t").unwrap_err();
        assert!(e.try_help);
        assert_eq!(e.message, "--tcp-service: missing argument");
        // ipvsadm's exit status: -1 for popt's errors and no command, 2
        // for its own checks.
        assert_eq!(e.exit_code(), 255);
        assert_eq!(parse_str("-t 10.0.0.1:80").unwrap_err().exit_code(), 255);
        assert_eq!(
            parse_str("-A -t 10.0.0.1:80 -w 3").unwrap_err().exit_code(),
            2
        );
    }

    #[test]
    fn help_mentions_every_command() {
        let text = usage();
        for word in [
            "--add-service",
            "--edit-service",
            "--delete-service",
            "--clear",
            "--restore",
            "--save",
            "--add-server",
            "--edit-server",
            "--delete-server",
            "--list",
            "--zero",
            "--set",
            "--status",
            "--socket",
            "-H user@host",
        ] {
            assert!(text.contains(word), "{word}");
        }
    }
}
