//! What a flow is, Zeek style: the set of protocols a parser confirmed from a packet's
//! content (not from its ports alone), named as Zeek's `conn.log` `service` names them.

use std::fmt;

use super::AppFields;

/// A set of services. Small and `Copy`: every flow segment carries one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Services(u8);

impl Services {
    pub const DNS: Services = Services(1);
    pub const HTTP: Services = Services(1 << 1);
    /// TLS (Zeek's name for it).
    pub const SSL: Services = Services(1 << 2);
    pub const QUIC: Services = Services(1 << 3);
    pub const SSH: Services = Services(1 << 4);
    pub const DHCP: Services = Services(1 << 5);

    /// Every service with its name, in the order [`Services`]' text lists them (QUIC before the
    /// TLS it carries, as Zeek lists them: `quic,ssl`).
    pub const ALL: [(Services, &'static str); 6] = [
        (Services::DNS, "dns"),
        (Services::HTTP, "http"),
        (Services::QUIC, "quic"),
        (Services::SSL, "ssl"),
        (Services::SSH, "ssh"),
        (Services::DHCP, "dhcp"),
    ];

    /// The services one packet's fields confirm: a DNS message with a question or an answer
    /// section header, an HTTP request or response head, a TLS ClientHello (`ssl`; from
    /// decrypted QUIC Initial packets also `quic`, as Zeek has it), an SSH identification
    /// string, a DHCP message.
    pub fn of(app: &AppFields) -> Services {
        let mut s = Services::default();
        if app.dns_qname.is_some() || app.dns_qtype.is_some() || app.dns_rcode.is_some() {
            s |= Services::DNS;
        }
        if app.http_method.is_some() || app.http_status.is_some() {
            s |= Services::HTTP;
        }
        if app.tls_ja3.is_some() || app.tls_sni.is_some() {
            s |= Services::SSL;
        }
        if app.quic_version.is_some() {
            s |= Services::QUIC;
        }
        if app.ssh_banner.is_some() {
            s |= Services::SSH;
        }
        if app.dhcp_msg_type.is_some() {
            s |= Services::DHCP;
        }
        s
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Services) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the services in the set, in [`Services::ALL`]'s order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Services::ALL
            .into_iter()
            .filter(move |(s, _)| self.contains(*s))
            .map(|(_, name)| name)
    }
}

impl std::ops::BitOr for Services {
    type Output = Services;
    fn bitor(self, o: Services) -> Services {
        Services(self.0 | o.0)
    }
}

impl std::ops::BitOrAssign for Services {
    fn bitor_assign(&mut self, o: Services) {
        self.0 |= o.0;
    }
}

/// Comma-joined names (`dns`, `http,ssl`); empty for the empty set.
impl fmt::Display for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::run;
    use crate::app::{IPPROTO_TCP, IPPROTO_UDP};

    #[test]
    fn confirmed_by_content() {
        let dns = run(IPPROTO_UDP, 53, 1, &crate::app::dns::tests::dns_response());
        assert_eq!(dns.services(), Services::DNS);
        let http = run(IPPROTO_TCP, 1, 8080, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(http.services(), Services::HTTP);
        let tls = run(
            IPPROTO_TCP,
            1,
            8443,
            &crate::app::tls::tests::modern_client_hello(),
        );
        assert_eq!(tls.services(), Services::SSL);
        let mut quic = tls.clone();
        quic.quic_version = Some(1);
        assert_eq!(quic.services(), Services::SSL | Services::QUIC);
        let ssh = run(IPPROTO_TCP, 1, 2222, b"SSH-2.0-x\r\n");
        assert_eq!(ssh.services(), Services::SSH);
        let dhcp = run(
            IPPROTO_UDP,
            68,
            67,
            &crate::app::dhcp::tests::dhcp(1, 1, [0; 4], &[]),
        );
        assert_eq!(dhcp.services(), Services::DHCP);
        // A port alone confirms nothing.
        assert!(
            run(IPPROTO_TCP, 1, 22, b"\x00\x01garbage")
                .services()
                .is_empty()
        );
        assert!(run(IPPROTO_UDP, 1, 53, b"\x00").services().is_empty());
    }

    #[test]
    fn text() {
        assert_eq!(Services::default().to_string(), "");
        assert_eq!((Services::SSL | Services::HTTP).to_string(), "http,ssl");
        let all = Services::ALL
            .iter()
            .fold(Services::default(), |s, (x, _)| s | *x);
        assert_eq!(all.to_string(), "dns,http,quic,ssl,ssh,dhcp");
    }
}
