//! DHCP (RFC 2131/2132) over UDP ports 67 and 68: the message type, the client's host name and
//! the address asked for or given.
//!
//! A BOOTP header (236 bytes) with the DHCP magic cookie, then options as type-length-value
//! triples. Walked in place by hand: the only crate for it (dhcproto) would bring a whole DNS
//! library into the build for three fields. A message that is cut short gives what its
//! complete options gave.
//!
//! Never panics on any input bytes.

use super::{AppFields, Parsed};

pub(super) const SERVER_PORT: u16 = 67;
pub(super) const CLIENT_PORT: u16 = 68;

/// Bytes before the options: the BOOTP header (RFC 2131 §2) and the magic cookie.
const OPTIONS_AT: usize = 240;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Offset of `yiaddr`, the address the server gives the client.
const YIADDR_AT: usize = 16;

const OPT_PAD: u8 = 0;
const OPT_HOST_NAME: u8 = 12;
const OPT_REQUESTED_ADDRESS: u8 = 50;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_END: u8 = 255;

/// DHCPOFFER and DHCPACK: the server gives `yiaddr`.
const OFFER: u8 = 2;
const ACK: u8 = 5;

/// A DHCP message in `payload`: `dhcp_msg_type` (option 53; a message without one is BOOTP, not
/// DHCP, and gives nothing), `dhcp_hostname` (option 12) and `dhcp_addr` (`yiaddr` of an OFFER or
/// ACK, else option 50, the address a client asks for).
pub(super) fn dhcp_message(payload: &[u8], out: &mut AppFields) -> Parsed {
    // op is 1 (request) or 2 (reply); htype 1 (Ethernet) is not required.
    if payload.len() < OPTIONS_AT
        || !matches!(payload[0], 1 | 2)
        || payload[236..240] != MAGIC_COOKIE
    {
        return Parsed::Nothing;
    }
    let (mut msg_type, mut host, mut requested) = (None, None, None);
    let mut rest = &payload[OPTIONS_AT..];
    while let Some((&code, tail)) = rest.split_first() {
        match code {
            OPT_PAD => {
                rest = tail;
                continue;
            }
            OPT_END => break,
            _ => {}
        }
        let Some((&len, tail)) = tail.split_first() else {
            break;
        };
        let Some((value, tail)) = tail.split_at_checked(usize::from(len)) else {
            break;
        };
        match (code, value) {
            (OPT_MESSAGE_TYPE, [t]) => msg_type = Some(*t),
            // Some clients end the name with NUL bytes (a C string), which tshark drops too.
            (OPT_HOST_NAME, name) => {
                let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                host = Some(&name[..end]).filter(|n| !n.is_empty());
            }
            (OPT_REQUESTED_ADDRESS, &[a, b, c, d]) => requested = Some([a, b, c, d]),
            _ => {}
        }
        rest = tail;
    }
    let Some(msg_type) = msg_type else {
        return Parsed::Nothing;
    };
    out.dhcp_msg_type = Some(msg_type);
    out.dhcp_hostname = host.map(|h| String::from_utf8_lossy(h).into_owned());
    let given = <[u8; 4]>::try_from(&payload[YIADDR_AT..YIADDR_AT + 4])
        .ok()
        .filter(|a| matches!(msg_type, OFFER | ACK) && *a != [0; 4]);
    out.dhcp_addr = given
        .or(requested)
        .map(|a| std::net::Ipv4Addr::from(a).to_string());
    Parsed::Complete
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::app::IPPROTO_UDP;
    use crate::app::tests::run;

    /// A DHCP message of type `msg_type` with `yiaddr` and the given options (code, value).
    pub(crate) fn dhcp(op: u8, msg_type: u8, yiaddr: [u8; 4], options: &[(u8, &[u8])]) -> Vec<u8> {
        let mut m = vec![0; OPTIONS_AT];
        m[0] = op;
        m[1] = 1;
        m[2] = 6;
        m[YIADDR_AT..YIADDR_AT + 4].copy_from_slice(&yiaddr);
        m[236..240].copy_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, msg_type]);
        for (code, value) in options {
            m.push(*code);
            m.push(value.len() as u8);
            m.extend_from_slice(value);
        }
        m.push(OPT_END);
        m
    }

    #[test]
    fn request_and_ack() {
        let req = dhcp(
            1,
            3,
            [0; 4],
            &[
                (OPT_PAD, &[]),
                (OPT_HOST_NAME, b"laptop-7\0"),
                (OPT_REQUESTED_ADDRESS, &[192, 168, 1, 23]),
            ],
        );
        // The pad option has no length byte: written as code 0 then a stray 0, two pads.
        let f = run(IPPROTO_UDP, CLIENT_PORT, SERVER_PORT, &req);
        assert_eq!(f.dhcp_msg_type, Some(3));
        assert_eq!(f.dhcp_hostname.as_deref(), Some("laptop-7"));
        assert_eq!(f.dhcp_addr.as_deref(), Some("192.168.1.23"));
        let ack = dhcp(2, ACK, [192, 168, 1, 23], &[]);
        let f = run(IPPROTO_UDP, SERVER_PORT, CLIENT_PORT, &ack);
        assert_eq!(f.dhcp_msg_type, Some(ACK));
        assert_eq!(f.dhcp_hostname, None);
        assert_eq!(f.dhcp_addr.as_deref(), Some("192.168.1.23"));
    }

    #[test]
    fn not_dhcp_or_cut_short() {
        // BOOTP without a message type, a bad cookie, a bad op, too short: nothing.
        let mut bootp = dhcp(1, 1, [0; 4], &[]);
        bootp.truncate(OPTIONS_AT);
        assert!(run(IPPROTO_UDP, CLIENT_PORT, SERVER_PORT, &bootp).is_empty());
        let mut bad = dhcp(1, 1, [0; 4], &[]);
        bad[236] = 0;
        assert!(run(IPPROTO_UDP, CLIENT_PORT, SERVER_PORT, &bad).is_empty());
        let mut bad = dhcp(1, 1, [0; 4], &[]);
        bad[0] = 3;
        assert!(run(IPPROTO_UDP, CLIENT_PORT, SERVER_PORT, &bad).is_empty());
        assert!(run(IPPROTO_UDP, CLIENT_PORT, SERVER_PORT, &[1; 100]).is_empty());
        // An option whose length runs past the end: the options before it count.
        let mut cut = dhcp(1, 1, [0; 4], &[(OPT_HOST_NAME, b"abcdef")]);
        cut.truncate(cut.len() - 4);
        let f = run(IPPROTO_UDP, CLIENT_PORT, SERVER_PORT, &cut);
        assert_eq!(f.dhcp_msg_type, Some(1));
        assert_eq!(f.dhcp_hostname, None);
    }
}
