//! SSH identification strings (RFC 4253 §4.2): `SSH-protoversion-softwareversion SP comments`,
//! sent in clear by both sides before the key exchange — the protocol version and the
//! software, as tshark's `ssh.protocol` and Zeek's `ssh.log` (`client`, `server`) show them.
//!
//! Never panics on any input bytes.

use super::{AppFields, Parsed};

/// The longest identification string RFC 4253 allows, CR LF included.
const MAX_BANNER: usize = 255;

/// An identification string at the start of `payload`: `out.ssh_banner` is the line without
/// its CR LF. A line not yet ended within [`MAX_BANNER`] bytes is [`Parsed::Partial`] (the
/// rest may come in the next segment); one with a byte that is not printable ASCII, or too
/// long, is not an SSH banner.
pub(super) fn ssh_banner(payload: &[u8], out: &mut AppFields) -> Parsed {
    if !payload.starts_with(b"SSH-") {
        return Parsed::Nothing;
    }
    let head = &payload[..payload.len().min(MAX_BANNER)];
    let (line, ended) = match head.iter().position(|&b| b == b'\n') {
        Some(end) => (&head[..end], true),
        None => (head, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Parsed::Nothing;
    }
    // protoversion, then '-', then softwareversion: at least "SSH-x-y".
    let Some(rest) = line.get(4..) else {
        return Parsed::Nothing;
    };
    if !ended {
        return if payload.len() < MAX_BANNER {
            Parsed::Partial
        } else {
            Parsed::Nothing
        };
    }
    match rest.iter().position(|&b| b == b'-') {
        Some(dash) if dash > 0 && dash + 1 < rest.len() => {}
        _ => return Parsed::Nothing,
    }
    // Printable ASCII: valid UTF-8.
    out.ssh_banner = std::str::from_utf8(line).ok().map(str::to_owned);
    Parsed::Complete
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::run;
    use crate::app::{IPPROTO_TCP, parse_app};

    #[test]
    fn client_and_server_banners() {
        let f = run(
            IPPROTO_TCP,
            50000,
            22,
            b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.1\r\n",
        );
        assert_eq!(
            f.ssh_banner.as_deref(),
            Some("SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.1")
        );
        // A bare LF, and the key exchange in the same segment after it.
        let f = run(
            IPPROTO_TCP,
            22,
            50000,
            b"SSH-1.99-Cisco-1.25\n\x00\x00\x01\x14\x0a\x14",
        );
        assert_eq!(f.ssh_banner.as_deref(), Some("SSH-1.99-Cisco-1.25"));
        // On any port.
        let f = run(IPPROTO_TCP, 40000, 2222, b"SSH-2.0-dropbear_2022.83\r\n");
        assert_eq!(f.ssh_banner.as_deref(), Some("SSH-2.0-dropbear_2022.83"));
    }

    #[test]
    fn not_banners() {
        for p in [
            &b"SSH-2.0\r\n"[..],
            b"SSH--x\r\n",
            b"SSH-2.0-\r\n",
            b"SSH-2.0-a\x01b\r\n",
            b"SSH-2.0-\xc3\xa9\r\n",
            b"ssh-2.0-x\r\n",
        ] {
            assert!(run(IPPROTO_TCP, 1, 22, p).ssh_banner.is_none(), "{p:?}");
        }
        let long = [b"SSH-2.0-".as_slice(), &[b'a'; 300], b"\r\n"].concat();
        assert!(run(IPPROTO_TCP, 1, 22, &long).ssh_banner.is_none());
    }

    #[test]
    fn a_banner_cut_short_is_partial() {
        let mut out = AppFields::default();
        assert_eq!(
            parse_app(IPPROTO_TCP, 1, 22, b"SSH-2.0-Open", &mut out),
            Parsed::Partial
        );
        assert_eq!(
            parse_app(IPPROTO_TCP, 1, 22, b"SSH-2.0-OpenSSH_9.6\r\n", &mut out),
            Parsed::Complete
        );
    }
}
