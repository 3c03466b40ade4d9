//! Writes the project's own small sample captures, byte-identical on every run.
//!
//! ```text
//! cargo run -p pcaplab-core --example make_captures -- captures/
//! ```
//!
//! Every packet is built here (etherparse's `PacketBuilder`), every timestamp is fixed and every
//! "random" value (ports, sequence numbers, IP ids, timing jitter) comes from a PRNG with a fixed
//! seed; the pcap / pcapng containers are written by the small helpers below. The project never
//! commits third-party captures: these files are all it ships.
//!
//! Files written:
//! * `lab-web.pcap`            classic pcap, Ethernet, µs: ARP, DNS, HTTP over TCP, ICMP echo, IPv6 UDP
//! * `lab-web.pcap.gz`         the same, gzip-compressed
//! * `lab-snaplen.pcap`        the lab-web.pcap packets captured with snaplen 64
//! * `lab-vlan-ipv6.pcapng`    pcapng, two interfaces (Ethernet, ns; raw IP, µs): 802.1Q, QinQ,
//!   IPv6 with a hop-by-hop header, raw IPv4
//! * `lab-vlan-ipv6.pcapng.zst` the same, zstd-compressed

use std::error::Error;
use std::io::Write as _;
use std::path::PathBuf;
use std::{env, fs};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, IpHeaders, IpNumber, Ipv4Header,
    Ipv6Extensions, Ipv6FlowLabel, Ipv6Header, Ipv6RawExtHeader, PacketBuilder, PacketBuilderStep,
    TcpOptionElement, VlanId,
};

type Res<T> = Result<T, Box<dyn Error>>;

const LINKTYPE_ETHERNET: u16 = 1;
const LINKTYPE_RAW: u16 = 101;

/// 2024-03-01T12:00:00Z: the first packet of lab-web.pcap.
const WEB_START_S: u64 = 1_709_294_400;
/// 2024-03-01T12:30:00Z: the first packet of lab-vlan-ipv6.pcapng.
const VLAN_START_S: u64 = 1_709_296_200;
const SEED: u64 = 0x7063_6170_6c61_6221; // "pcaplab!"

const NS_PER_US: u64 = 1_000;
const NS_PER_S: u64 = 1_000_000_000;

// ---------------------------------------------------------------------------------------------
// Deterministic helpers
// ---------------------------------------------------------------------------------------------

/// xorshift64*: small, fixed-seed, good enough for ports, ids and jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn u16(&mut self) -> u16 {
        (self.next() >> 48) as u16
    }

    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    /// An ephemeral port in 49152..65535.
    fn port(&mut self) -> u16 {
        49_152 + (self.below(16_000) as u16)
    }
}

/// One packet of a capture.
struct Frame {
    ts_ns: u64,
    /// pcapng interface id (0 for classic pcap).
    iface: u32,
    data: Vec<u8>,
    comment: Option<&'static str>,
}

impl Frame {
    fn new(iface: u32, ts_ns: u64, data: Vec<u8>, comment: Option<&'static str>) -> Self {
        Frame {
            ts_ns,
            iface,
            data,
            comment,
        }
    }
}

/// A clock that moves forward by a base step plus seeded jitter.
struct Clock {
    ns: u64,
    /// Round every timestamp down to this many ns (1000 for a µs capture).
    granule: u64,
}

impl Clock {
    fn new(start_ns: u64, granule: u64) -> Self {
        Clock {
            ns: start_ns,
            granule,
        }
    }

    /// Advance by `base_us` plus up to `jitter_us` (in ns steps), return the new time.
    fn tick(&mut self, rng: &mut Rng, base_us: u64, jitter_us: u64) -> u64 {
        let jitter_ns = if jitter_us == 0 {
            0
        } else {
            rng.below(jitter_us * NS_PER_US)
        };
        self.ns += base_us * NS_PER_US + jitter_ns;
        self.ns -= self.ns % self.granule;
        self.ns
    }
}

// ---------------------------------------------------------------------------------------------
// Container writers
// ---------------------------------------------------------------------------------------------

fn u32_of(n: usize) -> Res<u32> {
    Ok(u32::try_from(n)?)
}

/// Classic pcap global header: little-endian, microsecond magic, version 2.4.
fn pcap_global_header(out: &mut Vec<u8>, snaplen: u32, linktype: u16) {
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    out.extend_from_slice(&2_u16.to_le_bytes());
    out.extend_from_slice(&4_u16.to_le_bytes());
    out.extend_from_slice(&0_i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0_u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&u32::from(linktype).to_le_bytes());
}

/// Classic pcap record (µs timestamp); keeps at most `snaplen` bytes of the packet.
fn pcap_record(out: &mut Vec<u8>, f: &Frame, snaplen: usize) -> Res<()> {
    let ts_us = f.ts_ns / NS_PER_US;
    let caplen = f.data.len().min(snaplen);
    out.extend_from_slice(&u32::try_from(ts_us / 1_000_000)?.to_le_bytes());
    out.extend_from_slice(&u32::try_from(ts_us % 1_000_000)?.to_le_bytes());
    out.extend_from_slice(&u32_of(caplen)?.to_le_bytes());
    out.extend_from_slice(&u32_of(f.data.len())?.to_le_bytes());
    out.extend_from_slice(&f.data[..caplen]);
    Ok(())
}

fn pcap_file(frames: &[Frame], snaplen: u32, linktype: u16) -> Res<Vec<u8>> {
    let mut out = Vec::new();
    pcap_global_header(&mut out, snaplen, linktype);
    for f in frames {
        pcap_record(&mut out, f, usize::try_from(snaplen)?)?;
    }
    Ok(out)
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// One pcapng option (code, length, value padded to 32 bits).
fn pcapng_option(body: &mut Vec<u8>, code: u16, value: &[u8]) -> Res<()> {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&u16::try_from(value.len())?.to_le_bytes());
    body.extend_from_slice(value);
    pad4(body);
    Ok(())
}

fn pcapng_end_of_options(body: &mut Vec<u8>) {
    body.extend_from_slice(&[0, 0, 0, 0]);
}

/// A pcapng block: type, total length, body (padded), total length again.
fn pcapng_block(out: &mut Vec<u8>, block_type: u32, mut body: Vec<u8>) -> Res<()> {
    pad4(&mut body);
    let total = u32_of(body.len() + 12)?;
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&total.to_le_bytes());
    Ok(())
}

/// Section Header Block (little-endian, version 1.0, section length unspecified).
fn pcapng_shb(out: &mut Vec<u8>, user_appl: &str) -> Res<()> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1a2b_3c4d_u32.to_le_bytes());
    body.extend_from_slice(&1_u16.to_le_bytes());
    body.extend_from_slice(&0_u16.to_le_bytes());
    body.extend_from_slice(&(-1_i64).to_le_bytes());
    pcapng_option(&mut body, 4, user_appl.as_bytes())?; // shb_userappl
    pcapng_end_of_options(&mut body);
    pcapng_block(out, 0x0a0d_0d0a, body)
}

/// Interface Description Block with if_name and, when given, if_tsresol.
fn pcapng_idb(
    out: &mut Vec<u8>,
    linktype: u16,
    snaplen: u32,
    name: &str,
    tsresol: Option<u8>,
) -> Res<()> {
    let mut body = Vec::new();
    body.extend_from_slice(&linktype.to_le_bytes());
    body.extend_from_slice(&0_u16.to_le_bytes());
    body.extend_from_slice(&snaplen.to_le_bytes());
    pcapng_option(&mut body, 2, name.as_bytes())?; // if_name
    if let Some(r) = tsresol {
        pcapng_option(&mut body, 9, &[r])?; // if_tsresol
    }
    pcapng_end_of_options(&mut body);
    pcapng_block(out, 1, body)
}

/// Enhanced Packet Block; `ts` is in the interface's own units. Optional opt_comment.
fn pcapng_epb(out: &mut Vec<u8>, f: &Frame, ts: u64) -> Res<()> {
    let mut body = Vec::new();
    body.extend_from_slice(&f.iface.to_le_bytes());
    body.extend_from_slice(&u32::try_from(ts >> 32)?.to_le_bytes());
    body.extend_from_slice(&u32::try_from(ts & 0xffff_ffff)?.to_le_bytes());
    body.extend_from_slice(&u32_of(f.data.len())?.to_le_bytes());
    body.extend_from_slice(&u32_of(f.data.len())?.to_le_bytes());
    body.extend_from_slice(&f.data);
    pad4(&mut body);
    if let Some(c) = f.comment {
        pcapng_option(&mut body, 1, c.as_bytes())?; // opt_comment
        pcapng_end_of_options(&mut body);
    }
    pcapng_block(out, 6, body)
}

// ---------------------------------------------------------------------------------------------
// Packet building
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Link {
    Ethernet,
    Vlan(u16),
    QinQ(u16, u16),
    Raw,
}

#[derive(Clone, Copy)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

#[derive(Clone, Copy)]
struct Host {
    mac: [u8; 6],
    ip: Ip,
}

/// The link and IP layers of one packet, ready for a transport header.
fn ip_step(
    link: Link,
    src: &Host,
    dst: &Host,
    ttl: u8,
    ip_id: u16,
    hop_by_hop: bool,
) -> Res<PacketBuilderStep<IpHeaders>> {
    let ip = match (src.ip, dst.ip) {
        (Ip::V4(s), Ip::V4(d)) => IpHeaders::Ipv4(
            Ipv4Header {
                source: s,
                destination: d,
                time_to_live: ttl,
                identification: ip_id,
                dont_fragment: true,
                ..Default::default()
            },
            Default::default(),
        ),
        (Ip::V6(s), Ip::V6(d)) => {
            let mut exts = Ipv6Extensions::default();
            if hop_by_hop {
                // One PadN option (type 1, 4 zero bytes): the smallest valid hop-by-hop header.
                // next_header is rewritten by the builder.
                exts.hop_by_hop_options = Some(Ipv6RawExtHeader::new_raw(
                    IpNumber::TCP,
                    &[1, 4, 0, 0, 0, 0],
                )?);
            }
            IpHeaders::Ipv6(
                Ipv6Header {
                    flow_label: Ipv6FlowLabel::try_new(u32::from(ip_id) & 0xfffff)?,
                    hop_limit: ttl,
                    source: s,
                    destination: d,
                    ..Default::default()
                },
                exts,
            )
        }
        _ => return Err("mixed IPv4/IPv6 endpoints".into()),
    };
    Ok(match link {
        Link::Ethernet => PacketBuilder::ethernet2(src.mac, dst.mac).ip(ip),
        Link::Vlan(id) => PacketBuilder::ethernet2(src.mac, dst.mac)
            .single_vlan(VlanId::try_new(id)?)
            .ip(ip),
        Link::QinQ(outer, inner) => PacketBuilder::ethernet2(src.mac, dst.mac)
            .double_vlan(VlanId::try_new(outer)?, VlanId::try_new(inner)?)
            .ip(ip),
        Link::Raw => PacketBuilder::ip(ip),
    })
}

/// Pad a received Ethernet frame to the 60-byte minimum (as a NIC delivers it, FCS stripped).
fn pad_ethernet(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

fn udp_packet(
    link: Link,
    src: &Host,
    dst: &Host,
    ttl: u8,
    ip_id: u16,
    ports: (u16, u16),
    payload: &[u8],
) -> Res<Vec<u8>> {
    let mut v = Vec::new();
    ip_step(link, src, dst, ttl, ip_id, false)?
        .udp(ports.0, ports.1)
        .write(&mut v, payload)?;
    Ok(v)
}

const SYN: u8 = 1;
const ACK: u8 = 2;
const FIN: u8 = 4;
const PSH: u8 = 8;

/// One TCP connection; tracks sequence numbers, IP ids and windows of both sides.
struct Conn {
    link: Link,
    client: Host,
    server: Host,
    ports: (u16, u16),
    /// Next sequence number of client / server.
    seq: [u32; 2],
    ip_id: [u16; 2],
    ttl: [u8; 2],
    /// Window in the SYN and after the handshake (scaled).
    syn_window: [u16; 2],
    window: [u16; 2],
    mss: [u16; 2],
    hop_by_hop: bool,
    /// Pad server-to-client Ethernet frames to 60 bytes (capture taken on the client).
    pad_received: bool,
}

impl Conn {
    fn new(link: Link, client: Host, server: Host, server_port: u16, rng: &mut Rng) -> Conn {
        Conn {
            link,
            client,
            server,
            ports: (rng.port(), server_port),
            seq: [rng.u32(), rng.u32()],
            ip_id: [rng.u16(), rng.u16()],
            ttl: [64, 64],
            syn_window: [64_240, 65_160],
            window: [502, 509],
            mss: [1460, 1400],
            hop_by_hop: false,
            pad_received: false,
        }
    }

    /// One segment; `from_client` picks the direction. Advances the sender's sequence number.
    fn seg(&mut self, from_client: bool, flags: u8, payload: &[u8]) -> Res<Vec<u8>> {
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        let (src, dst, sport, dport) = if from_client {
            (self.client, self.server, self.ports.0, self.ports.1)
        } else {
            (self.server, self.client, self.ports.1, self.ports.0)
        };
        let window = if flags & SYN != 0 {
            self.syn_window[me]
        } else {
            self.window[me]
        };
        let mut b = ip_step(
            self.link,
            &src,
            &dst,
            self.ttl[me],
            self.ip_id[me],
            self.hop_by_hop,
        )?
        .tcp(sport, dport, self.seq[me], window);
        if flags & SYN != 0 {
            b = b.syn().options(&[
                TcpOptionElement::MaximumSegmentSize(self.mss[me]),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::SelectiveAcknowledgementPermitted,
            ])?;
        }
        if flags & ACK != 0 {
            b = b.ack(self.seq[peer]);
        }
        if flags & FIN != 0 {
            b = b.fin();
        }
        if flags & PSH != 0 {
            b = b.psh();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload)?;

        let consumed = payload.len() + usize::from(flags & (SYN | FIN) != 0);
        self.seq[me] = self.seq[me].wrapping_add(u32_of(consumed)?);
        self.ip_id[me] = self.ip_id[me].wrapping_add(1);
        if !from_client && self.pad_received && !matches!(self.link, Link::Raw) {
            v = pad_ethernet(v);
        }
        Ok(v)
    }
}

/// A DNS message with one question and, for a response, one answer pointing back at it.
fn dns_message(id: u16, name: &str, qtype: u16, answer: Option<(u32, &[u8])>) -> Res<Vec<u8>> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    let flags: u16 = if answer.is_some() { 0x8180 } else { 0x0100 };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&1_u16.to_be_bytes()); // QDCOUNT
    m.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes()); // ANCOUNT
    m.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    for label in name.split('.') {
        m.push(u8::try_from(label.len())?);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1_u16.to_be_bytes()); // IN
    if let Some((ttl, rdata)) = answer {
        m.extend_from_slice(&0xc00c_u16.to_be_bytes()); // name: pointer to the question
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1_u16.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&u16::try_from(rdata.len())?.to_be_bytes());
        m.extend_from_slice(rdata);
    }
    Ok(m)
}

const DNS_A: u16 = 1;
const DNS_PTR: u16 = 12;
const DNS_AAAA: u16 = 28;

fn http_response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nServer: pcaplab-lab/1.0\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: max-age=60\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn http_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: pcaplab-make-captures/1\r\n\
         Accept: */*\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// lab-web.pcap
// ---------------------------------------------------------------------------------------------

const CLIENT_MAC: [u8; 6] = [0x02, 0x50, 0x00, 0x00, 0x56, 0x0a];
const GATEWAY_MAC: [u8; 6] = [0x02, 0x50, 0x00, 0x00, 0x56, 0x01];

fn web_frames() -> Res<Vec<Frame>> {
    let mut rng = Rng(SEED);
    let mut clock = Clock::new(WEB_START_S * NS_PER_S, NS_PER_US);
    let mut frames: Vec<Frame> = Vec::new();
    let mut push = |ts_ns: u64, data: Vec<u8>| frames.push(Frame::new(0, ts_ns, data, None));

    let client = Host {
        mac: CLIENT_MAC,
        ip: Ip::V4([192, 168, 56, 10]),
    };
    let gateway = Host {
        mac: GATEWAY_MAC,
        ip: Ip::V4([192, 168, 56, 1]),
    };
    // Off-link web server: reached through the gateway's MAC.
    let web = Host {
        mac: GATEWAY_MAC,
        ip: Ip::V4([203, 0, 113, 80]),
    };
    let mut client_ip_id = rng.u16();
    let mut gw_ip_id = rng.u16();

    // ARP: who has 192.168.56.1?
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0xff; 6])
        .arp(ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &CLIENT_MAC,
            &[192, 168, 56, 10],
            &[0; 6],
            &[192, 168, 56, 1],
        )?)
        .write(&mut v)?;
    push(clock.ns, v);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GATEWAY_MAC, CLIENT_MAC)
        .arp(ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REPLY,
            &GATEWAY_MAC,
            &[192, 168, 56, 1],
            &CLIENT_MAC,
            &[192, 168, 56, 10],
        )?)
        .write(&mut v)?;
    push(clock.tick(&mut rng, 400, 200), pad_ethernet(v));

    // DNS: A and AAAA for www.example.com.
    let name = "www.example.com";
    let web_v6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
    ];
    for (qtype, rdata) in [(DNS_A, &[203, 0, 113, 80][..]), (DNS_AAAA, &web_v6[..])] {
        let id = rng.u16();
        let sport = rng.port();
        let q = dns_message(id, name, qtype, None)?;
        let t = clock.tick(&mut rng, 1_500, 500);
        push(
            t,
            udp_packet(
                Link::Ethernet,
                &client,
                &gateway,
                64,
                client_ip_id,
                (sport, 53),
                &q,
            )?,
        );
        client_ip_id = client_ip_id.wrapping_add(1);
        let r = dns_message(id, name, qtype, Some((300, rdata)))?;
        let t = clock.tick(&mut rng, 12_000, 4_000);
        push(
            t,
            udp_packet(
                Link::Ethernet,
                &gateway,
                &client,
                64,
                gw_ip_id,
                (53, sport),
                &r,
            )?,
        );
        gw_ip_id = gw_ip_id.wrapping_add(1);
    }

    // HTTP over TCP: handshake, three requests on one keep-alive connection, close.
    let mut c = Conn::new(Link::Ethernet, client, web, 80, &mut rng);
    c.ttl = [64, 52];
    c.pad_received = true;
    const RTT_US: u64 = 18_000;
    let t = clock.tick(&mut rng, 800, 300);
    push(t, c.seg(true, SYN, &[])?);
    let t = clock.tick(&mut rng, RTT_US, 2_000);
    push(t, c.seg(false, SYN | ACK, &[])?);
    let t = clock.tick(&mut rng, 60, 40);
    push(t, c.seg(true, ACK, &[])?);

    let mut page = String::from(
        "<!doctype html>\n<html><head><title>pcaplab lab page</title>\n\
         <link rel=\"stylesheet\" href=\"/style.css\"></head>\n<body>\n<h1>pcaplab lab page</h1>\n",
    );
    for i in 1..=40 {
        page.push_str(&format!(
            "<p>Line {i:02}: a small, deterministic page served for pcaplab's sample capture.</p>\n"
        ));
    }
    page.push_str("</body></html>\n");
    let css = "body { font-family: sans-serif; margin: 2em; }\nh1 { color: #246; }\n\
               p { line-height: 1.4; }\n";
    let not_found = "<html><body>404 Not Found</body></html>\n";
    let exchanges: [(&str, Vec<u8>); 3] = [
        ("/", http_response("200 OK", "text/html", &page)),
        ("/style.css", http_response("200 OK", "text/css", css)),
        (
            "/favicon.ico",
            http_response("404 Not Found", "text/html", not_found),
        ),
    ];
    for (path, response) in &exchanges {
        let t = clock.tick(&mut rng, 150, 100);
        push(t, c.seg(true, PSH | ACK, &http_request(path))?);
        // A bare ACK from the server before a multi-segment answer.
        let segments: Vec<&[u8]> = response.chunks(usize::from(c.mss[0])).collect();
        if segments.len() > 1 {
            let t = clock.tick(&mut rng, RTT_US, 2_000);
            push(t, c.seg(false, ACK, &[])?);
        }
        for (i, s) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let t = if i == 0 {
                clock.tick(&mut rng, RTT_US + 3_000, 2_000)
            } else {
                clock.tick(&mut rng, 30, 20)
            };
            push(t, c.seg(false, if last { PSH | ACK } else { ACK }, s)?);
        }
        let t = clock.tick(&mut rng, 50, 40);
        push(t, c.seg(true, ACK, &[])?);
    }
    let t = clock.tick(&mut rng, 250_000, 50_000);
    push(t, c.seg(true, FIN | ACK, &[])?);
    let t = clock.tick(&mut rng, RTT_US, 2_000);
    push(t, c.seg(false, FIN | ACK, &[])?);
    let t = clock.tick(&mut rng, 60, 40);
    push(t, c.seg(true, ACK, &[])?);

    // ICMP echo: four pings, Linux-style 56-byte payload (16-byte timeval + 0x10..0x37).
    let ping_id = rng.u16();
    let mut t = clock.tick(&mut rng, 500_000, 100_000);
    for seq in 1..=4_u16 {
        let mut payload = Vec::with_capacity(56);
        let ts_us = t / NS_PER_US;
        payload.extend_from_slice(&(ts_us / 1_000_000).to_le_bytes());
        payload.extend_from_slice(&(ts_us % 1_000_000).to_le_bytes());
        payload.extend(0x10..0x38_u8);
        let mut v = Vec::new();
        ip_step(Link::Ethernet, &client, &web, 64, client_ip_id, false)?
            .icmpv4_echo_request(ping_id, seq)
            .write(&mut v, &payload)?;
        client_ip_id = client_ip_id.wrapping_add(1);
        push(t, v);
        let mut v = Vec::new();
        ip_step(Link::Ethernet, &web, &client, 52, rng.u16(), false)?
            .icmpv4_echo_reply(ping_id, seq)
            .write(&mut v, &payload)?;
        push(clock.tick(&mut rng, RTT_US, 3_000), v);
        t = clock.tick(&mut rng, 1_000_000, 2_000);
    }

    // One IPv6 UDP packet: an mDNS PTR query from the client's link-local address.
    let client_v6 = Host {
        mac: CLIENT_MAC,
        ip: Ip::V6([
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x00, 0x50, 0x00, 0xff, 0xfe, 0x00, 0x56, 0x0a,
        ]),
    };
    let mdns_group = Host {
        mac: [0x33, 0x33, 0, 0, 0, 0xfb],
        ip: Ip::V6([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb]),
    };
    let q = dns_message(0, "_http._tcp.local", DNS_PTR, None)?;
    push(
        t,
        udp_packet(
            Link::Ethernet,
            &client_v6,
            &mdns_group,
            255,
            0,
            (5353, 5353),
            &q,
        )?,
    );

    Ok(frames)
}

// ---------------------------------------------------------------------------------------------
// lab-vlan-ipv6.pcapng
// ---------------------------------------------------------------------------------------------

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0x00, 0x5e, 0xaa, 0x00, last]
}

fn vlan_frames() -> Res<Vec<Frame>> {
    let mut rng = Rng(SEED ^ 0x0123_4567_89ab_cdef);
    let start = VLAN_START_S * NS_PER_S;
    let mut frames: Vec<Frame> = Vec::new();

    // Interface 0, 802.1Q VLAN 100: an HTTP request on port 8080 over IPv4.
    {
        let mut clock = Clock::new(start, 1);
        let client = Host {
            mac: mac(0x10),
            ip: Ip::V4([10, 100, 0, 10]),
        };
        let server = Host {
            mac: mac(0x20),
            ip: Ip::V4([10, 100, 0, 20]),
        };
        let mut c = Conn::new(Link::Vlan(100), client, server, 8080, &mut rng);
        let mut add = |t: u64, data: Vec<u8>, comment: Option<&'static str>| {
            frames.push(Frame::new(0, t, data, comment))
        };
        add(
            clock.ns,
            c.seg(true, SYN, &[])?,
            Some("802.1Q VLAN 100, IPv4 TCP"),
        );
        add(
            clock.tick(&mut rng, 300, 100),
            c.seg(false, SYN | ACK, &[])?,
            None,
        );
        add(clock.tick(&mut rng, 40, 20), c.seg(true, ACK, &[])?, None);
        let req = b"GET /status HTTP/1.1\r\nHost: 10.100.0.20:8080\r\nAccept: */*\r\n\r\n";
        add(
            clock.tick(&mut rng, 80, 40),
            c.seg(true, PSH | ACK, req)?,
            None,
        );
        let resp = http_response("200 OK", "text/plain", "ok\n");
        add(
            clock.tick(&mut rng, 900, 300),
            c.seg(false, PSH | ACK, &resp)?,
            None,
        );
        add(clock.tick(&mut rng, 40, 20), c.seg(true, ACK, &[])?, None);
        add(
            clock.tick(&mut rng, 2_000, 500),
            c.seg(true, FIN | ACK, &[])?,
            None,
        );
        add(
            clock.tick(&mut rng, 300, 100),
            c.seg(false, FIN | ACK, &[])?,
            None,
        );
        add(clock.tick(&mut rng, 40, 20), c.seg(true, ACK, &[])?, None);
    }

    // Interface 0, QinQ (outer 200 / inner 300): NTP client/server over IPv4 UDP.
    {
        let mut clock = Clock::new(start + 150_321, 1);
        let client = Host {
            mac: mac(0x30),
            ip: Ip::V4([10, 200, 0, 10]),
        };
        let server = Host {
            mac: mac(0x01),
            ip: Ip::V4([10, 200, 0, 1]),
        };
        let sport = rng.port();
        for i in 0..2_u64 {
            let t = clock.tick(&mut rng, 700 + i * 1_000, 300);
            let mut ntp = [0_u8; 48];
            ntp[0] = 0x23; // LI 0, version 4, mode 3 (client)
            // Transmit timestamp: seconds since 1900.
            let ntp_s = u32::try_from(t / NS_PER_S + 2_208_988_800)?;
            ntp[40..44].copy_from_slice(&ntp_s.to_be_bytes());
            ntp[44..48].copy_from_slice(&rng.u32().to_be_bytes());
            let q = udp_packet(
                Link::QinQ(200, 300),
                &client,
                &server,
                64,
                rng.u16(),
                (sport, 123),
                &ntp,
            )?;
            frames.push(Frame::new(
                0,
                t,
                q,
                (i == 0).then_some("QinQ 200/300, IPv4 UDP (NTP)"),
            ));
            let t = clock.tick(&mut rng, 450, 150);
            let mut reply = ntp;
            reply[0] = 0x24; // mode 4 (server)
            reply[1] = 2; // stratum
            reply[24..32].copy_from_slice(&ntp[40..48]); // origin = client's transmit
            reply[40..44].copy_from_slice(&ntp_s.to_be_bytes());
            reply[44..48].copy_from_slice(&rng.u32().to_be_bytes());
            let r = udp_packet(
                Link::QinQ(200, 300),
                &server,
                &client,
                64,
                rng.u16(),
                (123, sport),
                &reply,
            )?;
            frames.push(Frame::new(0, t, r, None));
        }
    }

    // Interface 0, IPv6 TCP with a hop-by-hop header: an SSH banner exchange.
    {
        let mut clock = Clock::new(start + 900_457, 1);
        let v6 = |last: u8| -> [u8; 16] {
            [
                0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
            ]
        };
        let client = Host {
            mac: mac(0x40),
            ip: Ip::V6(v6(0x10)),
        };
        let server = Host {
            mac: mac(0x50),
            ip: Ip::V6(v6(0x20)),
        };
        let mut c = Conn::new(Link::Ethernet, client, server, 22, &mut rng);
        c.hop_by_hop = true;
        c.mss = [1440, 1440];
        let mut add = |t: u64, data: Vec<u8>, comment: Option<&'static str>| {
            frames.push(Frame::new(0, t, data, comment))
        };
        add(
            clock.ns,
            c.seg(true, SYN, &[])?,
            Some("IPv6 with hop-by-hop options header, TCP"),
        );
        add(
            clock.tick(&mut rng, 250, 100),
            c.seg(false, SYN | ACK, &[])?,
            None,
        );
        add(clock.tick(&mut rng, 40, 20), c.seg(true, ACK, &[])?, None);
        add(
            clock.tick(&mut rng, 3_000, 1_000),
            c.seg(false, PSH | ACK, b"SSH-2.0-OpenSSH_9.6 pcaplab-lab\r\n")?,
            None,
        );
        add(
            clock.tick(&mut rng, 200, 100),
            c.seg(true, PSH | ACK, b"SSH-2.0-pcaplab_make_captures_1\r\n")?,
            None,
        );
        add(
            clock.tick(&mut rng, 250, 100),
            c.seg(false, ACK, &[])?,
            None,
        );
        add(
            clock.tick(&mut rng, 1_500, 500),
            c.seg(true, FIN | ACK, &[])?,
            None,
        );
        add(
            clock.tick(&mut rng, 250, 100),
            c.seg(false, FIN | ACK, &[])?,
            None,
        );
        add(clock.tick(&mut rng, 40, 20), c.seg(true, ACK, &[])?, None);
    }

    // Interface 1, LINKTYPE_RAW (µs): DNS over IPv4 UDP inside a tunnel.
    {
        let mut clock = Clock::new(start + 400_000, NS_PER_US);
        let client = Host {
            mac: [0; 6],
            ip: Ip::V4([10, 8, 0, 2]),
        };
        let resolver = Host {
            mac: [0; 6],
            ip: Ip::V4([10, 8, 0, 1]),
        };
        let name = "vpn.example.net";
        let v6: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        for (i, (qtype, rdata)) in [(DNS_A, &[198, 51, 100, 7][..]), (DNS_AAAA, &v6[..])]
            .into_iter()
            .enumerate()
        {
            let id = rng.u16();
            let sport = rng.port();
            let t = clock.tick(&mut rng, 600, 200);
            let q = dns_message(id, name, qtype, None)?;
            frames.push(Frame::new(
                1,
                t,
                udp_packet(
                    Link::Raw,
                    &client,
                    &resolver,
                    64,
                    rng.u16(),
                    (sport, 53),
                    &q,
                )?,
                (i == 0).then_some("raw IPv4 (LINKTYPE_RAW), UDP DNS"),
            ));
            let t = clock.tick(&mut rng, 9_000, 3_000);
            let r = dns_message(id, name, qtype, Some((60, rdata)))?;
            frames.push(Frame::new(
                1,
                t,
                udp_packet(
                    Link::Raw,
                    &resolver,
                    &client,
                    64,
                    rng.u16(),
                    (53, sport),
                    &r,
                )?,
                None,
            ));
        }
    }

    // Interleave the four streams in time order (stable: equal times keep stream order).
    frames.sort_by_key(|f| f.ts_ns);
    Ok(frames)
}

fn pcapng_file(frames: &[Frame]) -> Res<Vec<u8>> {
    let mut out = Vec::new();
    pcapng_shb(&mut out, "pcaplab make_captures")?;
    pcapng_idb(&mut out, LINKTYPE_ETHERNET, 262_144, "eth0", Some(9))?;
    pcapng_idb(&mut out, LINKTYPE_RAW, 262_144, "tun0", None)?;
    for f in frames {
        // Interface 0 counts nanoseconds (if_tsresol 9), interface 1 microseconds (default).
        let ts = if f.iface == 0 {
            f.ts_ns
        } else {
            f.ts_ns / NS_PER_US
        };
        pcapng_epb(&mut out, f, ts)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------

fn gzip(data: &[u8]) -> Res<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

fn main() -> Res<()> {
    let mut args = env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        return Err("usage: make_captures <output-directory>".into());
    };
    let dir = PathBuf::from(dir);
    fs::create_dir_all(&dir)?;

    let web = web_frames()?;
    let web_pcap = pcap_file(&web, 262_144, LINKTYPE_ETHERNET)?;
    let snap_pcap = pcap_file(&web, 64, LINKTYPE_ETHERNET)?;
    let vlan = vlan_frames()?;
    let vlan_pcapng = pcapng_file(&vlan)?;

    let outputs: [(&str, Vec<u8>, String); 5] = [
        (
            "lab-web.pcap",
            web_pcap.clone(),
            format!("{} packets", web.len()),
        ),
        (
            "lab-web.pcap.gz",
            gzip(&web_pcap)?,
            format!("{} packets", web.len()),
        ),
        (
            "lab-snaplen.pcap",
            snap_pcap,
            format!("{} packets, snaplen 64", web.len()),
        ),
        (
            "lab-vlan-ipv6.pcapng",
            vlan_pcapng.clone(),
            format!("{} packets", vlan.len()),
        ),
        (
            "lab-vlan-ipv6.pcapng.zst",
            zstd::encode_all(&vlan_pcapng[..], 19)?,
            format!("{} packets", vlan.len()),
        ),
    ];
    for (name, bytes, what) in outputs {
        let path = dir.join(name);
        fs::write(&path, &bytes)?;
        println!("{:>8} bytes  {}  ({what})", bytes.len(), path.display());
    }
    Ok(())
}
