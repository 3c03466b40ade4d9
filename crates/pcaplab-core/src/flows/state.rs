//! A TCP connection's state as Zeek describes it: the history letters each side sent and
//! `conn_state`, derived from them.

/// Zeek's history letters, per side: `S` SYN, `H` SYN-ACK, `A` pure ACK, `D` data, `F` FIN,
/// `R` RST. Upper case for the originator, lower case for the responder.
pub(super) const LETTERS: [u8; 6] = *b"SHADFR";
pub(super) const L_SYN: usize = 0;
pub(super) const L_SYNACK: usize = 1;
pub(super) const L_ACK: usize = 2;
pub(super) const L_DATA: usize = 3;
pub(super) const L_FIN: usize = 4;
pub(super) const L_RST: usize = 5;

/// Each (letter, side) once, in order of first occurrence; side is `a` (0) or `b` (1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct History {
    events: [u8; 12],
    len: u8,
    /// Bit `letter * 2 + side` is set once that event is in `events` (the eviction ranking
    /// asks every live flow whether it is closed).
    seen: u16,
}

impl History {
    pub(super) fn push(&mut self, letter: usize, side: usize) {
        let code = letter * 2 + side;
        // 12 events at most: each (letter, side) once.
        if code < 12 && self.seen & 1 << code == 0 {
            self.events[usize::from(self.len)] = code as u8;
            self.len += 1;
            self.seen |= 1 << code;
        }
    }

    pub(super) fn extend(&mut self, other: &History) {
        for code in &other.events[..usize::from(other.len)] {
            self.push(usize::from(code / 2), usize::from(code % 2));
        }
    }

    pub(super) fn events(&self) -> impl Iterator<Item = (u8, usize)> + '_ {
        self.events[..usize::from(self.len)]
            .iter()
            .map(|c| (LETTERS[usize::from(c / 2)], usize::from(c % 2)))
    }

    /// Whether `side` sent the event `l` (one of the `L_` indices into [`LETTERS`]).
    pub(super) fn has(&self, l: usize, side: usize) -> bool {
        self.seen & 1 << (l * 2 + side) != 0
    }

    /// A FIN from each side, or a RST from either: the connection is over.
    pub(super) fn closed(&self) -> bool {
        (self.has(L_FIN, 0) && self.has(L_FIN, 1)) || self.has(L_RST, 0) || self.has(L_RST, 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TcpState {
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// Zeek's `conn_state()` (base/protocols/conn/main.zeek) over the two endpoint states;
/// `history` gives the history string, which only an originator's reset asks for.
pub(super) fn zeek_tcp_state<H: std::ops::Deref<Target = str>>(
    os: TcpState,
    rs: TcpState,
    no_payload: bool,
    history: impl FnOnce() -> H,
) -> &'static str {
    use TcpState::*;
    let o_inactive = matches!(os, Inactive | Partial);
    let r_inactive = matches!(rs, Inactive | Partial);
    if rs == Reset {
        if matches!(os, SynSent | SynAckSent) || (os == Reset && no_payload) {
            "REJ"
        } else if o_inactive {
            "RSTRH"
        } else {
            "RSTR"
        }
    } else if os == Reset {
        if r_inactive {
            // /^?S[^HAFGIQ]*R.*/
            let history = history();
            let h = history.strip_prefix('^').unwrap_or(&history);
            match h.strip_prefix('S') {
                Some(rest) => {
                    let before_r = rest.split('R').next().unwrap_or(rest);
                    if rest.contains('R') && !before_r.contains(['H', 'A', 'F', 'G', 'I', 'Q']) {
                        "RSTOS0"
                    } else {
                        "OTH"
                    }
                }
                None => "OTH",
            }
        } else {
            "RSTO"
        }
    } else if rs == Closed && os == Closed {
        "SF"
    } else if os == Closed {
        if r_inactive { "SH" } else { "S2" }
    } else if rs == Closed {
        if o_inactive { "SHR" } else { "S3" }
    } else if os == SynSent && rs == Inactive {
        "S0"
    } else if os == Established && rs == Established {
        "S1"
    } else {
        "OTH"
    }
}
