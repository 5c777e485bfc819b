//! `-R`: ipvsadm -S lines from stdin, turned into the operations of one
//! batch so lvsd applies all of them or none.
//!
//! Each line is an ipvsadm command line and is checked exactly as one given
//! on lvsadm's own command line. As in ipvsadm, a line may start with the
//! program's name, blank lines are skipped, and a token starting with '#'
//! ends the line.
//!
//! Options lvsd has no use for are handled as on the command line:
//! * accepted and ignored, because they change nothing lvsd does:
//!   `--tun-type ipip` (lvsd tunnels are IPIP), `-M 255.255.255.255` or
//!   `-M 128` (the default persistence granularity), `-n`;
//! * refused with a message naming the line, so that nothing is applied:
//!   `-b` scheduler flags (`-b sh-port` changes how connections are
//!   spread), `--pe`, `-o`, `-f`, `--sctp-service`, other tunnel types and
//!   their options, coarser `-M` masks. Applying the rest of such a file
//!   would silently give a different service than the one saved.
//!
//! Only commands that change the table may appear: -A -E -D -C -a -e -d -Z
//! and --set.

use crate::args::{self, Action, UsageError};
use lvsd_proto::Op;

/// Program names a restore line may start with.
const PROGRAM_NAMES: &[&str] = &["ipvsadm", "lvsadm"];

/// The operations of `input`, in order, or the first line's error.
#[cfg(test)]
pub fn parse(input: &str) -> Result<Vec<Op>, UsageError> {
    Ok(parse_lines(input)?.into_iter().map(|(_, op)| op).collect())
}

/// The operations of `input` with the number of the line each came from.
pub fn parse_lines(input: &str) -> Result<Vec<(usize, Op)>, UsageError> {
    let mut ops = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let mut tokens: Vec<String> = line
            .split_whitespace()
            .take_while(|t| !t.starts_with('#'))
            .map(str::to_string)
            .collect();
        if tokens
            .first()
            .is_some_and(|t| PROGRAM_NAMES.contains(&t.as_str()))
        {
            tokens.remove(0);
        }
        if tokens.is_empty() {
            continue;
        }
        let at_line = |message: &str| UsageError::new(format!("line {number}: {message}"));
        let invocation = args::parse(&tokens).map_err(|e| {
            if e.message.is_empty() {
                at_line("no command given")
            } else {
                at_line(&e.message)
            }
        })?;
        if invocation.socket.is_some() {
            return Err(at_line("--socket cannot be used in restore input"));
        }
        match invocation.action {
            Action::Change(op) => ops.push((number, op)),
            _ => {
                return Err(at_line(
                    "only -A, -E, -D, -C, -a, -e, -d, -Z and --set can be restored",
                ))
            }
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvsd_proto::{DestSpec, Method, Protocol, ServiceKey, ServiceSpec, Timeouts};

    const REF_SAVE: &str = include_str!("testdata/ipvsadm-save.txt");

    fn key(p: Protocol, a: &str) -> ServiceKey {
        ServiceKey {
            protocol: p,
            addr: a.parse().unwrap(),
        }
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
    fn reference_save_is_refused_for_its_scheduler_flags() {
        let e = parse(REF_SAVE).unwrap_err();
        assert_eq!(
            e.message,
            "line 7: scheduler flags (-b) are not supported by lvsd"
        );
    }

    #[test]
    fn reference_save_without_sched_flags_parses() {
        // The same file with the one unsupported option taken out.
        let text = REF_SAVE.replace(" -b sh-port", "");
        let web = key(Protocol::Tcp, "192.168.0.100:80");
        let tls = key(Protocol::Tcp, "192.168.0.100:443");
        let dns = key(Protocol::Udp, "192.168.0.100:53");
        let spec = |k, s: &str, p| ServiceSpec {
            key: k,
            scheduler: s.into(),
            persistent: p,
        };
        assert_eq!(
            parse(&text).unwrap(),
            vec![
                Op::AddService {
                    service: spec(web, "wlc", None)
                },
                Op::AddDest {
                    service: web,
                    dest: dest("10.0.0.11:80", 1, Method::Nat)
                },
                Op::AddDest {
                    service: web,
                    dest: dest("10.0.0.12:80", 3, Method::Nat)
                },
                Op::AddService {
                    service: spec(tls, "rr", Some(300))
                },
                Op::AddDest {
                    service: tls,
                    dest: dest("10.0.0.21:443", 1, Method::Dr)
                },
                Op::AddDest {
                    service: tls,
                    dest: dest("10.0.0.22:443", 1, Method::Dr)
                },
                Op::AddService {
                    service: spec(dns, "sh", None)
                },
                // --tun-type ipip is what lvsd tunnels are anyway.
                Op::AddDest {
                    service: dns,
                    dest: dest("10.0.0.31:53", 1, Method::Tun)
                },
            ]
        );
    }

    #[test]
    fn comments_blank_lines_and_program_names() {
        let text = "\
# saved by hand
ipvsadm -C

lvsadm -A -t 10.0.0.1:80 -s rr   # web
   --set 900 120 300
-Z
";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                Op::Clear,
                Op::AddService {
                    service: ServiceSpec {
                        key: key(Protocol::Tcp, "10.0.0.1:80"),
                        scheduler: "rr".into(),
                        persistent: None,
                    }
                },
                Op::SetTimeouts {
                    timeouts: Timeouts {
                        tcp: 900,
                        tcp_fin: 120,
                        udp: 300
                    }
                },
                Op::Zero { service: None },
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("\n# nothing\n").unwrap(), vec![]);
    }

    #[test]
    fn bad_lines_name_their_number() {
        assert_eq!(
            parse("-C\n-A -t 10.0.0.1:80 -w 3\n").unwrap_err().message,
            "line 2: Illegal 'weight' option with the 'add-service' command"
        );
        assert_eq!(
            parse("-L -n\n").unwrap_err().message,
            "line 1: only -A, -E, -D, -C, -a, -e, -d, -Z and --set can be restored"
        );
        assert_eq!(
            parse("-R\n").unwrap_err().message,
            "line 1: only -A, -E, -D, -C, -a, -e, -d, -Z and --set can be restored"
        );
        assert_eq!(
            parse("-n\n").unwrap_err().message,
            "line 1: no command given"
        );
        assert_eq!(
            parse("-C --socket /x\n").unwrap_err().message,
            "line 1: --socket cannot be used in restore input"
        );
        assert!(!parse("-C\n").unwrap().is_empty());
    }
}
