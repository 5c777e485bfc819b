//! IPVS's connection states and their timeouts.
//!
//! The TCP transitions follow IPVS (net/netfilter/ipvs/ip_vs_proto_tcp.c):
//! a director that sees both directions (NAT) moves on the flags of packets
//! from the client ([`Dir::Input`]) and from the real server
//! ([`Dir::Output`]); one that sees only the client's side (DR, TUN) uses
//! [`Dir::InputOnly`]. Only RST, SYN, FIN and ACK matter, in that priority.

use lvsd_proto::Timeouts;

/// A connection's state, as `ipvsadm -L -c` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    None,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
    /// UDP has one state.
    Udp,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::None => "NONE",
            State::Established => "ESTABLISHED",
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::FinWait => "FIN_WAIT",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::CloseWait => "CLOSE_WAIT",
            State::LastAck => "LAST_ACK",
            State::Listen => "LISTEN",
            State::SynAck => "SYNACK",
            State::Udp => "UDP",
        }
    }

    /// Whether a connection in this state counts as active (ActiveConn),
    /// as IPVS has counted since Linux 4.7 (`tcp_state_active_table`): the
    /// handshake's states and ESTABLISHED; the rest are inactive.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Established | State::SynSent | State::SynRecv | State::SynAck
        )
    }

    /// How long an entry in this state lives without traffic, in ms. The
    /// three that `--set` changes come from `t`; the rest are IPVS's fixed
    /// defaults.
    pub fn timeout_ms(self, t: &Timeouts) -> u64 {
        let secs = match self {
            State::None => 2,
            State::Established => u64::from(t.tcp),
            State::SynSent => 120,
            State::SynRecv => 60,
            State::FinWait => u64::from(t.tcp_fin),
            State::TimeWait => 120,
            State::Close => 10,
            State::CloseWait => 60,
            State::LastAck => 30,
            State::Listen => 120,
            State::SynAck => 120,
            State::Udp => u64::from(t.udp),
        };
        secs * 1000
    }
}

/// Which side a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to real server, on a director that also sees the replies.
    Input,
    /// Real server to client.
    Output,
    /// Client to real server, on a director that never sees the replies.
    InputOnly,
}

/// The TCP flag that drives a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Syn,
    Fin,
    Ack,
    Rst,
}

impl Event {
    /// RST wins over SYN, SYN over FIN, FIN over ACK; a segment with none of
    /// them changes nothing.
    pub fn from_flags(syn: bool, fin: bool, ack: bool, rst: bool) -> Option<Event> {
        if rst {
            Some(Event::Rst)
        } else if syn {
            Some(Event::Syn)
        } else if fin {
            Some(Event::Fin)
        } else if ack {
            Some(Event::Ack)
        } else {
            None
        }
    }
}

/// The state after `ev` arrives from `dir` in state `s`.
pub fn next_tcp(s: State, dir: Dir, ev: Event) -> State {
    use Event::*;
    use State::*;
    match (dir, ev) {
        (Dir::Input | Dir::InputOnly, Syn) => match s {
            Established | SynSent => Established,
            _ => SynRecv,
        },
        (Dir::Input, Fin) => match s {
            None | Close => Close,
            Established | CloseWait => CloseWait,
            SynSent => SynSent,
            LastAck => LastAck,
            Listen => Listen,
            _ => TimeWait,
        },
        (Dir::InputOnly, Fin) => match s {
            None | Close => Close,
            Established | FinWait => FinWait,
            SynSent => SynSent,
            CloseWait => CloseWait,
            LastAck => LastAck,
            Listen => Listen,
            _ => TimeWait,
        },
        (Dir::Input | Dir::InputOnly, Ack) => match s {
            None | Close | LastAck => Close,
            Established | SynRecv | SynAck => Established,
            SynSent => SynSent,
            FinWait => FinWait,
            CloseWait => CloseWait,
            Listen => Listen,
            _ => TimeWait,
        },
        (Dir::Input, Rst) => match s {
            SynRecv | SynAck => SynRecv,
            LastAck => LastAck,
            Listen => Listen,
            _ => Close,
        },
        (Dir::InputOnly, Rst) => match s {
            SynRecv => SynRecv,
            LastAck => LastAck,
            Listen => Listen,
            _ => Close,
        },
        (Dir::Output, Syn) => match s {
            Established => Established,
            SynRecv | SynAck => SynRecv,
            Listen => Listen,
            _ => SynSent,
        },
        (Dir::Output, Fin) => match s {
            Established | FinWait => FinWait,
            SynSent => SynSent,
            Close => Close,
            LastAck => LastAck,
            Listen => Listen,
            _ => TimeWait,
        },
        (Dir::Output, Ack) => match s {
            None | Established | SynRecv | Listen | SynAck => Established,
            SynSent => SynSent,
            FinWait => FinWait,
            TimeWait => TimeWait,
            Close => Close,
            CloseWait => CloseWait,
            LastAck => LastAck,
            Udp => Udp,
        },
        (Dir::Output, Rst) => match s {
            SynSent => SynSent,
            TimeWait => TimeWait,
            _ => Close,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's whole connection through a NAT director, as IPVS sees it.
    #[test]
    fn nat_handshake_and_close() {
        let mut s = State::None;
        let steps = [
            (Dir::Input, Event::Syn, State::SynRecv),
            (Dir::Output, Event::Syn, State::SynRecv), // SYN+ACK counts as SYN
            (Dir::Input, Event::Ack, State::Established),
            (Dir::Input, Event::Fin, State::CloseWait),
            (Dir::Output, Event::Ack, State::CloseWait),
            (Dir::Output, Event::Fin, State::TimeWait),
            (Dir::Input, Event::Ack, State::TimeWait),
        ];
        for (dir, ev, want) in steps {
            s = next_tcp(s, dir, ev);
            assert_eq!(s, want, "{dir:?} {ev:?}");
        }
    }

    #[test]
    fn server_closes_first() {
        let mut s = State::Established;
        s = next_tcp(s, Dir::Output, Event::Fin);
        assert_eq!(s, State::FinWait);
        s = next_tcp(s, Dir::Input, Event::Fin);
        assert_eq!(s, State::TimeWait);
    }

    #[test]
    fn rst_closes() {
        assert_eq!(
            next_tcp(State::Established, Dir::Input, Event::Rst),
            State::Close
        );
        assert_eq!(
            next_tcp(State::Established, Dir::Output, Event::Rst),
            State::Close
        );
        assert_eq!(
            next_tcp(State::SynRecv, Dir::Input, Event::Rst),
            State::SynRecv
        );
    }

    #[test]
    fn flag_priority() {
        assert_eq!(Event::from_flags(true, true, true, true), Some(Event::Rst));
        assert_eq!(
            Event::from_flags(true, false, true, false),
            Some(Event::Syn)
        );
        assert_eq!(
            Event::from_flags(false, true, true, false),
            Some(Event::Fin)
        );
        assert_eq!(Event::from_flags(false, false, false, false), None);
    }

    #[test]
    fn default_timeouts() {
        let t = crate::rules::DEFAULT_TIMEOUTS;
        assert_eq!(State::Established.timeout_ms(&t), 900_000);
        assert_eq!(State::SynRecv.timeout_ms(&t), 60_000);
        assert_eq!(State::FinWait.timeout_ms(&t), 120_000);
        assert_eq!(State::TimeWait.timeout_ms(&t), 120_000);
        assert_eq!(State::Close.timeout_ms(&t), 10_000);
        assert_eq!(State::Udp.timeout_ms(&t), 300_000);
    }
}
