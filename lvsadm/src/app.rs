//! Runs a parsed command: one request to lvsd, its answer printed in
//! ipvsadm's format, and ipvsadm's exit status.

use crate::args::{self, Action, Invocation, ListWhat};
use crate::client::{self, Client, ClientError};
use crate::{format, remote, restore};
use lvsd_proto::{ErrorKind, Op, Response};
use std::io::{self, Read, Write};

/// Success.
pub const EXIT_OK: i32 = 0;
/// lvsd could not be reached or answered oddly, or a listing failed (as
/// ipvsadm's exit(1) in its list functions).
pub const EXIT_FAIL: i32 = 1;
/// lvsd refused a change (-A -E -D -C -a -e -d -Z --set -R): 255, as
/// ipvsadm, whose process_options returns -1 from main here.
pub const EXIT_REFUSED: i32 = 255;
/// The command line is wrong (ipvsadm's fail(2, ...)).
pub const EXIT_USAGE: i32 = 2;

/// The whole program after argument collection: -H, parsing, running.
pub fn main(argv: &[String]) -> i32 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();

    let (host, args) = match remote::split_host(argv) {
        Ok(split) => split,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return EXIT_USAGE;
        }
    };
    // Checked here even for -H, so a typo fails before any ssh.
    let invocation = match args::parse(&args) {
        Ok(inv) => inv,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return e.exit_code();
        }
    };
    if let Some(host) = host {
        let _ = out.flush();
        return remote::exec(&host, &args);
    }

    let path = client::socket_path(
        invocation.socket.as_deref(),
        std::env::var_os(client::SOCKET_ENV),
    );
    let mut client: Option<Client> = None;
    let mut call = |op: Op| -> Result<Response, ClientError> {
        if client.is_none() {
            client = Some(Client::connect(&path)?);
        }
        match client.as_mut() {
            Some(c) => c.call(op),
            None => unreachable!("connected above"),
        }
    };
    let code = run(
        &invocation,
        &mut call,
        &mut io::stdin().lock(),
        &mut out,
        &mut err,
    );
    let _ = out.flush();
    code
}

/// The request an action needs, when it needs lvsd at all.
fn request(action: &Action) -> Option<Op> {
    match action {
        Action::Help | Action::Version | Action::Restore => None,
        Action::List { what, .. } => match what {
            ListWhat::All => Some(Op::List { service: None }),
            ListWhat::Service(key) => Some(Op::List {
                service: Some(*key),
            }),
            ListWhat::Conns => Some(Op::ListConns),
            ListWhat::Timeouts => Some(Op::GetTimeouts),
            ListWhat::Daemon => None,
        },
        Action::Save => Some(Op::List { service: None }),
        Action::Status => Some(Op::DaemonStats),
        Action::Change(op) => Some(op.clone()),
    }
}

/// Runs `invocation`, talking to lvsd through `call`; returns the exit
/// status.
pub fn run(
    invocation: &Invocation,
    call: &mut dyn FnMut(Op) -> Result<Response, ClientError>,
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let action = &invocation.action;
    // -R: the input line of each operation in the batch.
    let mut lines: Vec<usize> = Vec::new();
    let op = match action {
        Action::Help => return emit(out, err, &args::usage()),
        Action::Version => return emit(out, err, &args::version_text()),
        Action::Restore => {
            let mut text = String::new();
            if let Err(e) = input.read_to_string(&mut text) {
                let _ = writeln!(err, "lvsadm: reading the rules from stdin: {e}");
                return EXIT_FAIL;
            }
            match restore::parse_lines(&text) {
                Ok(ops) => {
                    if ops.is_empty() {
                        return EXIT_OK;
                    }
                    let (numbers, ops) = ops.into_iter().unzip();
                    lines = numbers;
                    Op::Batch { ops }
                }
                Err(e) => {
                    let _ = writeln!(err, "{e}");
                    return EXIT_USAGE;
                }
            }
        }
        _ => match request(action) {
            Some(op) => op,
            // -L --daemon: no sync daemon runs, so there is nothing to show.
            None => return EXIT_OK,
        },
    };

    let response = match call(op.clone()) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return EXIT_FAIL;
        }
    };
    if let Response::Error { kind, message } = &response {
        let _ = writeln!(err, "{}", refused_text(&op, &lines, *kind, message));
        return match action {
            Action::Change(_) | Action::Restore => EXIT_REFUSED,
            _ => EXIT_FAIL,
        };
    }

    let text = match (action, response) {
        (Action::Change(_) | Action::Restore, Response::Ok) => return EXIT_OK,
        (Action::List { what, format }, Response::Services(snapshot)) => match what {
            ListWhat::Service(key) => match snapshot.services.iter().find(|s| s.spec.key == *key) {
                Some(svc) => format::list_service(svc, format),
                None => {
                    let _ = writeln!(err, "No such service");
                    return EXIT_FAIL;
                }
            },
            _ => format::list_all(&snapshot, format),
        },
        (Action::List { format, .. }, Response::Conns { conns }) => format::conns(&conns, format),
        (Action::List { .. }, Response::Timeouts(t)) => format::timeouts(&t),
        (Action::Save, Response::Services(snapshot)) => format::save(&snapshot),
        (Action::Status, Response::DaemonStats(stats)) => format::daemon_stats(&stats),
        (_, other) => {
            let _ = writeln!(err, "lvsadm: unexpected answer from lvsd: {other:?}");
            return EXIT_FAIL;
        }
    };
    emit(out, err, &text)
}

/// Writes `text` to stdout; a failed write (but for a closed pipe, which
/// the reader chose) is reported.
/// What to print when lvsd refuses `op`. An operation of a restore batch
/// is named by its input line, and gets the text it would get on its own
/// (`lines`: each batch operation's line).
fn refused_text(op: &Op, lines: &[usize], kind: ErrorKind, message: &str) -> String {
    if let Op::Batch { ops } = op {
        if let Some((n, inner)) = lvsd_proto::split_batch_error(message) {
            let at = n.checked_sub(1);
            if let (Some(line), Some(one)) =
                (at.and_then(|i| lines.get(i)), at.and_then(|i| ops.get(i)))
            {
                return format!("line {line}: {}", format::error_text(one, kind, inner));
            }
        }
    }
    format::error_text(op, kind, message)
}

fn emit(out: &mut dyn Write, err: &mut dyn Write, text: &str) -> i32 {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_FAIL,
        Err(e) => {
            let _ = writeln!(err, "lvsadm: writing the output: {e}");
            EXIT_FAIL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvsd_proto::{ErrorKind, Protocol, ServiceKey, Snapshot, Timeouts};

    struct Outcome {
        code: i32,
        out: String,
        err: String,
        sent: Vec<Op>,
    }

    fn run_with(line: &str, stdin: &str, answer: Response) -> Outcome {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let inv = args::parse(&args).unwrap();
        let mut sent = Vec::new();
        let mut call = |op: Op| {
            sent.push(op);
            Ok(answer.clone())
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&inv, &mut call, &mut stdin.as_bytes(), &mut out, &mut err);
        Outcome {
            code,
            out: String::from_utf8(out).unwrap(),
            err: String::from_utf8(err).unwrap(),
            sent,
        }
    }

    fn empty() -> Response {
        Response::Services(Snapshot {
            conn_table_size: 4096,
            services: vec![],
        })
    }

    #[test]
    fn list_all_empty_table() {
        let o = run_with("-L -n", "", empty());
        assert_eq!(o.code, EXIT_OK);
        assert_eq!(o.sent, vec![Op::List { service: None }]);
        assert_eq!(
            o.out,
            "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        );
    }

    #[test]
    fn list_missing_service_says_no_such_service() {
        let o = run_with("-L -n -t 10.0.0.1:80", "", empty());
        assert_eq!(o.code, EXIT_FAIL);
        assert_eq!(o.err, "No such service\n");
        assert_eq!(o.out, "");
        let o = run_with(
            "-L -n -t 10.0.0.1:80",
            "",
            Response::Error {
                kind: ErrorKind::NoService,
                message: "no service tcp 10.0.0.1:80".into(),
            },
        );
        assert_eq!((o.code, o.err.as_str()), (EXIT_FAIL, "No such service\n"));
    }

    #[test]
    fn change_errors_use_ipvsadm_texts() {
        let refuse = |kind| Response::Error {
            kind,
            message: "lvsd says no".into(),
        };
        let o = run_with("-A -t 10.0.0.1:80", "", refuse(ErrorKind::ServiceExists));
        assert_eq!(
            (o.code, o.err.as_str()),
            (EXIT_REFUSED, "Service already exists\n")
        );
        let o = run_with(
            "-a -t 10.0.0.1:80 -r 10.0.0.2",
            "",
            refuse(ErrorKind::NoService),
        );
        assert_eq!(
            (o.code, o.err.as_str()),
            (EXIT_REFUSED, "Service not defined\n")
        );
        let o = run_with("-D -t 10.0.0.1:80", "", refuse(ErrorKind::NoService));
        assert_eq!(
            (o.code, o.err.as_str()),
            (EXIT_REFUSED, "No such service\n")
        );
        let o = run_with("-C", "", refuse(ErrorKind::Unsupported));
        assert_eq!((o.code, o.err.as_str()), (EXIT_REFUSED, "lvsd says no\n"));
        let o = run_with("-C", "", Response::Ok);
        assert_eq!((o.code, o.out.as_str(), o.err.as_str()), (EXIT_OK, "", ""));
    }

    #[test]
    fn restore_sends_one_batch() {
        let o = run_with("-R", "-C\n-A -t 10.0.0.1:80 -s rr\n", Response::Ok);
        assert_eq!(o.code, EXIT_OK);
        assert_eq!(o.sent.len(), 1);
        match &o.sent[0] {
            Op::Batch { ops } => assert_eq!(ops.len(), 2),
            other => panic!("{other:?}"),
        }
        // Bad input sends nothing.
        let o = run_with("-R", "-C\n-A -t 10.0.0.1\n", Response::Ok);
        assert_eq!(o.code, EXIT_USAGE);
        assert!(o.sent.is_empty());
        assert_eq!(
            o.err,
            "line 2: Zero port specified for non-persistent service\n"
        );
        // Empty input: nothing to do.
        let o = run_with("-R", "\n", Response::Ok);
        assert_eq!((o.code, o.sent.len()), (EXIT_OK, 0));
        // lvsd refuses an operation of the batch: named by its input line,
        // with the text it gets on its own.
        let refused = |message: &str| Response::Error {
            kind: ErrorKind::NoService,
            message: message.into(),
        };
        let input = "# saved\n-A -t 10.0.0.1:80 -s rr\n\n-a -t 10.0.0.9:80 -r 10.0.0.2\n";
        let o = run_with(
            "-R",
            input,
            refused("operation 2: no such service: TCP 10.0.0.9:80"),
        );
        assert_eq!(
            (o.code, o.err.as_str()),
            (EXIT_REFUSED, "line 4: Service not defined\n")
        );
        let o = run_with("-R", input, refused("operation 1: no such service: x"));
        assert_eq!(
            (o.code, o.err.as_str()),
            (EXIT_REFUSED, "line 2: No such service\n")
        );
        // A message that names no operation of the batch is printed as before.
        for message in ["something else", "operation 0: x", "operation 9: x"] {
            let o = run_with("-R", input, refused(message));
            assert_eq!(o.err, format!("No such service ({message})\n"));
        }
    }

    #[test]
    fn timeouts_save_status_and_daemon() {
        let o = run_with(
            "-L --timeout",
            "",
            Response::Timeouts(Timeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300,
            }),
        );
        assert_eq!(o.sent, vec![Op::GetTimeouts]);
        assert_eq!(o.out, "Timeout (tcp tcpfin udp): 900 120 300\n");
        let o = run_with("-S", "", empty());
        assert_eq!((o.code, o.out.as_str()), (EXIT_OK, ""));
        let o = run_with("--status", "", Response::DaemonStats(Default::default()));
        assert_eq!(o.sent, vec![Op::DaemonStats]);
        assert!(o.out.starts_with("counter"));
        let o = run_with("-L --daemon", "", Response::Ok);
        assert_eq!((o.code, o.out.as_str(), o.sent.len()), (EXIT_OK, "", 0));
    }

    #[test]
    fn unexpected_answers_fail() {
        let o = run_with("-L", "", Response::Ok);
        assert_eq!(o.code, EXIT_FAIL);
        assert!(o.err.starts_with("lvsadm: unexpected answer from lvsd"));
    }

    #[test]
    fn help_and_version_need_no_daemon() {
        let o = run_with("-h", "", Response::Ok);
        assert_eq!(o.code, EXIT_OK);
        assert!(o.out.contains("Usage:"));
        assert!(o.sent.is_empty());
        let o = run_with("-v", "", Response::Ok);
        assert!(o.out.starts_with("lvsadm v"));
        assert!(o.sent.is_empty());
    }

    #[test]
    fn list_one_service_is_requested_by_key() {
        let key = ServiceKey {
            protocol: Protocol::Udp,
            addr: "10.0.0.1:53".parse().unwrap(),
        };
        let o = run_with("-L -u 10.0.0.1:53 --stats", "", empty());
        assert_eq!(o.sent, vec![Op::List { service: Some(key) }]);
    }
}
