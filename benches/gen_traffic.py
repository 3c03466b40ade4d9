#!/usr/bin/env python3
"""Synthetic captures for the benchmarks: hostile traffic, flow-table stress, and speed.sh's
small-TCP and DNS inputs.

    benches/gen_traffic.py SHAPE PACKETS OUT.pcap [--seed N] [--rate PPS]

Writes a classic pcap (little-endian, microsecond timestamps, LINKTYPE_ETHERNET) of PACKETS
frames, the first at 2023-11-14 22:13:20 UTC (1,700,000,000 s), one every 1/PPS s of capture
time. Shapes:

  syn-flood   Spoofed TCP SYNs to 192.0.2.1:80 from random IPv4 sources and ports (all four
              octets random, as `hping3 --rand-source` does; random IP ID and sequence number),
              50,000 packets/s. As a tap at the victim sees them: a 54-byte frame (Ethernet,
              IPv4 total length 40, TCP header 20 bytes, no options) padded to Ethernet's
              minimum of 60 bytes.
  udp-scan    DNS amplification / reflection: DNS responses from port 53 of random resolvers
              (one random IPv4 source per packet) to one victim, 198.51.100.7:33333, 50,000
              packets/s. Each is a real response to a query for one of 64 names
              (www0.example.com … www63.example.com): one A answer, or for every fourth name
              one TXT answer; random transaction IDs.
  udp-flows   What benches/flows_memory.sh measures: every packet the first of a new UDP flow
              (10.x.y.z, source port 1024 + i mod 60000, to 192.0.2.1:53, payload "ping"), 10,000
              packets/s.
  tcp-small   Many short TCP connections, as benches/speed.sh's small-packet input (what 20
              copies of Zeek's echo-connections.pcap gave the issue): 300 client/server pairs
              (clients 10.20.0.0/16 to 40 servers in 10.30.0.0/24), each connection from the
              client's next ephemeral port (32768-60999) to the pair's service: echo (port 7,
              half of the pairs: 16-64 printable bytes, echoed back), HTTP (80, a fifth: a GET
              of about 60 bytes, a 27-byte "204 No Content"), Redis (6379: PING / +PONG) or TLS
              (443: application-data records of 30-90 bytes each way). A connection is the
              three-way handshake (SYN and SYN-ACK with MSS, SACK-permitted and window-scale
              options), 1-4 exchanges of request, reply and the client's ACK, then FIN-ACK,
              FIN-ACK, ACK: 9 to 18 packets, 13.5 on average, of 60-144 bytes (pure ACKs and
              FINs padded to Ethernet's minimum of 60). 64 connections are open at a time, their
              packets interleaved at random; 20,000 packets/s. The last connections are cut off
              where PACKETS ends.
  dns         DNS over UDP as a busy site sees it: 400 clients (10.1.0.0/16) ask 4 resolvers
              (client i uses resolver i mod 4) and every query is answered 1-40 packets later
              (responses and queries interleaved; about half the packets each). Names: 4,000
              host names (www, api, cdn, mail, ... under 600 domains of 15 TLDs) drawn with a
              Zipf-like popularity; query types A 60%, AAAA 30%, MX 5%, TXT 5% (MX and TXT for
              the name's domain). Answers as a resolver gives them: 1-4 A or 1-2 AAAA records,
              for a third of the names behind a CNAME to a CDN host; 1-3 MX exchanges; an SPF
              TXT; 3% of the names do not exist (NXDOMAIN with the zone's SOA), and AAAA for a
              fifth of the names is empty (NOERROR, SOA). Names in answers are compressed as
              servers do (pointers to the question and to earlier suffixes); even-numbered
              clients send an EDNS OPT record (4096 bytes) and get one back. Random source port
              (1024-65535) and transaction ID per query, so each query/response pair is a UDP
              flow. 20,000 packets/s.

Random values come from Python's random module seeded with --seed (default 16): the same
arguments write the same bytes. IPv4 and TCP/UDP checksums are left zero (nothing here checks
them); every length field is right. The file is written as OUT.tmp and renamed when complete,
so an interrupted run never leaves a short OUT behind for a script that reuses its inputs.
Python 3, standard library only; records are built in batches and written with one join per
100,000 packets (about 1-2 µs of Python per packet; tcp-small and dns 2.5-4.5 µs: 1.65 M
tcp-small packets take 4-5.5 s of CPU, 1.3 M dns packets 4.5-6 s).
"""
import argparse
import bisect
import heapq
import os
import random
import struct
import sys

BASE_US = 1_700_000_000 * 1_000_000
BATCH = 100_000
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
RECORD = struct.Struct("<IIII")  # ts_sec, ts_usec, incl_len, orig_len


def records(n, rate, frame):
    """Packets 0..n-1 as pcap records, `rate` per second of capture time, in batches;
    frame(i) makes packet i's bytes (called in order)."""
    step = 1_000_000 / rate
    for start in range(0, n, BATCH):
        buf = []
        for i in range(start, min(n, start + BATCH)):
            f = frame(i)
            us = BASE_US + int(i * step)
            buf.append(RECORD.pack(us // 1_000_000, us % 1_000_000, len(f), len(f)) + f)
        yield buf


def syn_flood(n, rng, rate):
    # Ethernet: victim's MAC <- its router's; IPv4 then TCP; source, IP ID, source port and
    # sequence number vary; 6 bytes of Ethernet padding to the 60-byte minimum.
    eth = bytes.fromhex("02000000000102000000fe01") + b"\x08\x00"
    dst = bytes([192, 0, 2, 1])
    # ver/IHL, DSCP, total length 40, ID, flags+fragment (DF), TTL, TCP, checksum, src, dst
    ip = struct.Struct("!BBHHHBBH4s4s")
    # sport, dport, seq, ack, data offset 5 (<<4), flags SYN, window, checksum, urgent
    tcp = struct.Struct("!HHIIBBHHH")
    pad = bytes(6)

    def frame(_):
        r = rng.getrandbits(96)
        src = (r & 0xFFFFFFFF).to_bytes(4, "big")
        return (eth
                + ip.pack(0x45, 0, 40, (r >> 32) & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
                + tcp.pack(1024 + ((r >> 48) & 0xFFFF) % 64512, 80, r >> 64, 0, 0x50, 0x02,
                           512, 0, 0)
                + pad)
    return records(n, rate, frame)


def dns_name(name):
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"


def udp_scan(n, rng, rate):
    eth = bytes.fromhex("02000000000702000000fe01") + b"\x08\x00"
    dst = bytes([198, 51, 100, 7])
    # The DNS message after its transaction ID, per query name: flags (response, RD, RA,
    # NOERROR), 1 question, 1 answer; the question; the answer (name: pointer to the
    # question's), TTL 300, and an A address or a TXT string.
    bodies = []
    for k in range(64):
        qname = dns_name(f"www{k}.example.com")
        if k % 4 == 3:
            qtype, rdata = 16, b"\x0bv=spf1 -all"
        else:
            qtype, rdata = 1, bytes([203, 0, 113, k])
        bodies.append(struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
                      + qname + struct.pack("!HH", qtype, 1)
                      + struct.pack("!HHHIH", 0xC00C, qtype, 1, 300, len(rdata)) + rdata)
    ip = struct.Struct("!BBHHHBBH4s4s")
    udp = struct.Struct("!HHHH")

    def frame(_):
        r = rng.getrandbits(70)
        src = (r & 0xFFFFFFFF).to_bytes(4, "big")
        body = bodies[(r >> 64) & 63]
        dns = ((r >> 32) & 0xFFFF).to_bytes(2, "big") + body
        return (eth
                + ip.pack(0x45, 0, 28 + len(dns), (r >> 48) & 0xFFFF, 0, 57, 17, 0, src, dst)
                + udp.pack(53, 33333, 8 + len(dns), 0)
                + dns)
    return records(n, rate, frame)


def udp_flows(n, rng, rate):
    # Byte for byte what flows_memory.sh wrote before this file (at the default rate).
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"

    def frame(i):
        src = bytes([10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
        sport = 1024 + (i % 60000)
        udp = struct.pack("!HHHH", sport, 53, 8 + 4, 0) + b"ping"
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src,
                         bytes([192, 0, 2, 1]))
        return eth + ip + udp
    return records(n, rate, frame)


def mac(ip):
    """A locally administered MAC for an IPv4 address (02:00 + the address)."""
    return b"\x02\x00" + ip


def ipv4(a, b, c, d):
    return bytes([a, b, c, d])


IP = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")
UDP = struct.Struct("!HHHH")
PRINTABLE = bytes(range(0x20, 0x7F))


def tcp_small(n, rng, rate):
    # Options of the SYN and SYN-ACK: MSS 1460, NOP NOP SACK-permitted, NOP window scale 7.
    syn_opts = bytes.fromhex("020405b4" "01010402" "01030307")
    servers = [ipv4(10, 30, 0, 10 + k) for k in range(40)]
    services = [7] * 10 + [80] * 4 + [6379] * 3 + [443] * 3
    pairs = []
    for k in range(300):
        client = ipv4(10, 20, rng.randrange(256), 1 + rng.randrange(254))
        pairs.append([client, servers[k % 40], rng.choice(services), 32768 + rng.randrange(28232)])
    ip_id = {}

    def seg(src, dst, sport, dport, seq, ack, flags, payload=b"", opts=b""):
        ident = ip_id.get(src, 0)
        ip_id[src] = (ident + 1) & 0xFFFF
        tcp = TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                       (5 + len(opts) // 4) << 4, flags, 64240 if flags & 0x02 else 502, 0, 0)
        ip = IP.pack(0x45, 0, 20 + len(tcp) + len(opts) + len(payload), ident, 0x4000, 64, 6, 0,
                     src, dst)
        f = mac(dst) + mac(src) + b"\x08\x00" + ip + tcp + opts + payload
        return f if len(f) >= 60 else f + bytes(60 - len(f))

    def exchange(port):
        if port == 7:
            req = bytes(rng.choices(PRINTABLE, k=rng.randint(16, 64)))
            return req, req
        if port == 80:
            req = (f"GET /api/v1/items/{rng.randrange(100000)} HTTP/1.1\r\n"
                   f"Host: svc{rng.randrange(40)}.example.net\r\n\r\n").encode()
            return req, b"HTTP/1.1 204 No Content\r\n\r\n"
        if port == 6379:
            return b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"
        req, resp = rng.randint(30, 90), rng.randint(30, 90)
        return (b"\x17\x03\x03" + (req - 5).to_bytes(2, "big") + rng.randbytes(req - 5),
                b"\x17\x03\x03" + (resp - 5).to_bytes(2, "big") + rng.randbytes(resp - 5))

    def connection():
        pair = rng.choice(pairs)
        c, s, dport, cport = pair
        pair[3] = 32768 + (cport - 32768 + 1) % 28232
        cs, ss = rng.getrandbits(32), rng.getrandbits(32)
        yield seg(c, s, cport, dport, cs, 0, 0x02, opts=syn_opts)
        yield seg(s, c, dport, cport, ss, cs + 1, 0x12, opts=syn_opts)
        cs, ss = cs + 1, ss + 1
        yield seg(c, s, cport, dport, cs, ss, 0x10)
        for _ in range(rng.randint(1, 4)):
            req, resp = exchange(dport)
            yield seg(c, s, cport, dport, cs, ss, 0x18, req)
            cs += len(req)
            yield seg(s, c, dport, cport, ss, cs, 0x18, resp)
            ss += len(resp)
            yield seg(c, s, cport, dport, cs, ss, 0x10)
        yield seg(c, s, cport, dport, cs, ss, 0x11)
        yield seg(s, c, dport, cport, ss, cs + 1, 0x11)
        yield seg(c, s, cport, dport, cs + 1, ss + 1, 0x10)

    open_ = [connection() for _ in range(64)]

    def frame(_):
        k = rng.randrange(64)
        f = next(open_[k], None)
        if f is None:
            open_[k] = connection()
            f = next(open_[k])
        return f
    return records(n, rate, frame)


class DnsMessage:
    """A DNS message being built, with names compressed as servers do it: each name's suffixes
    point at the first place they occurred (offsets below 0x4000)."""

    def __init__(self, flags, qd, an, ns, ar):
        self.buf = bytearray(struct.pack("!HHHHHH", 0, flags, qd, an, ns, ar))
        self.seen = {}

    def name(self, name):
        labels = name.split(".")
        for i in range(len(labels)):
            at = self.seen.get(".".join(labels[i:]))
            if at is not None:
                self.buf += struct.pack("!H", 0xC000 | at)
                return
            if len(self.buf) < 0x4000:
                self.seen[".".join(labels[i:])] = len(self.buf)
            self.buf += bytes([len(labels[i])]) + labels[i].encode()
        self.buf += b"\x00"

    def rr(self, name, rtype, ttl, *rdata):
        """One resource record; its rdata's parts are bytes, or names (str) to compress."""
        self.name(name)
        self.buf += struct.pack("!HHIH", rtype, 1, ttl, 0)
        at = len(self.buf)
        for part in rdata:
            if isinstance(part, str):
                self.name(part)
            else:
                self.buf += part
        struct.pack_into("!H", self.buf, at - 2, len(self.buf) - at)

    def body(self):
        """The message after its transaction ID."""
        return bytes(self.buf[2:])


DNS_A, DNS_CNAME, DNS_SOA, DNS_MX, DNS_TXT, DNS_AAAA, DNS_OPT = 1, 5, 6, 15, 16, 28, 41
OPT_RR = b"\x00" + struct.pack("!HHIH", DNS_OPT, 4096, 0, 0)  # root, UDP size 4096, no options


def dns(n, rng, rate):
    tlds = ["com", "net", "org", "io", "de", "co.uk", "fr", "nl", "jp", "com.br", "ru", "info",
            "edu", "gov", "cloud"]
    words = ["shop", "news", "mail", "cloud", "video", "bank", "social", "search", "maps",
             "games", "photo", "music", "travel", "weather", "sport", "health", "market",
             "stream", "office", "learn", "code", "chat", "pay", "food", "home", "auto"]
    subs = ["www", "api", "cdn", "static", "img", "mail", "login", "auth", "m", "app", "ads",
            "telemetry", "update", "docs", "status", "assets", "media", "push"]
    domains = [f"{rng.choice(words)}{rng.choice(words)}{k % 7 or ''}.{rng.choice(tlds)}"
               for k in range(600)]
    names = []  # (host, its domain), most popular first
    for _ in range(4000):
        d = domains[int(600 * rng.random() ** 2)]  # the popular domains have more names
        names.append((f"{rng.choice(subs)}{rng.choice(['', '', '', '2', '-eu', '-us'])}.{d}", d))
    cum, total = [], 0.0
    for k in range(len(names)):
        total += 1 / (k + 1) ** 0.9
        cum.append(total)
    zones = {}  # name index -> what its zone has for it, drawn when first asked

    def zone(k):
        z = zones.get(k)
        if z is None:
            host, dom = names[k]
            z = zones[k] = {
                "nx": rng.random() < 0.03, "no6": rng.random() < 0.2,
                "cname": (f"{host.split('.')[0]}.{dom.replace('.', '-')}.edge-cdn.net"
                          if rng.random() < 1 / 3 else None),
                "a": [bytes([rng.randrange(1, 224)]) + rng.randbytes(3)
                      for _ in range(rng.randint(1, 4))],
                "aaaa": [b"\x20\x01\x0d\xb8" + rng.randbytes(12)
                         for _ in range(rng.randint(1, 2))],
                "mx": [(10 * (j + 1), f"mx{j + 1}.{dom}") for j in range(rng.randint(1, 3))],
                "txt": f"v=spf1 include:_spf.{dom} ip4:{rng.randrange(1, 224)}.{rng.randrange(256)}"
                       ".0.0/16 ~all".encode(),
                "ttl": rng.choice([60, 300, 300, 3600, 86400])}
        return z

    cache = {}

    def bodies(k, qtype, edns):
        """(query, response) after the transaction ID, built once per name, type and EDNS."""
        key = (k, qtype, edns)
        if key in cache:
            return cache[key]
        host, dom = names[k]
        qname = host if qtype in (DNS_A, DNS_AAAA) else dom
        z = zone(k)
        q = DnsMessage(0x0100, 1, 0, 0, int(edns))  # RD
        q.name(qname)
        q.buf += struct.pack("!HH", qtype, 1)
        if edns:
            q.buf += OPT_RR
        answers, authority, rcode = 0, 0, 0
        r = DnsMessage(0, 0, 0, 0, 0)
        r.name(qname)
        r.buf += struct.pack("!HH", qtype, 1)
        if z["nx"] or (qtype == DNS_AAAA and z["no6"]):
            rcode, authority = (3 if z["nx"] else 0), 1
            r.rr(dom, DNS_SOA, 900, f"ns1.{dom}", f"hostmaster.{dom}",
                 struct.pack("!IIIII", 2024010101, 7200, 900, 1209600, 300))
        elif qtype in (DNS_A, DNS_AAAA):
            owner = qname
            if z["cname"]:
                r.rr(owner, DNS_CNAME, z["ttl"], z["cname"])
                owner, answers = z["cname"], 1
            for addr in z["a"] if qtype == DNS_A else z["aaaa"]:
                r.rr(owner, qtype, 60 if z["cname"] else z["ttl"], addr)
                answers += 1
        elif qtype == DNS_MX:
            for pref, exchange in z["mx"]:
                r.rr(qname, DNS_MX, z["ttl"], struct.pack("!H", pref), exchange)
                answers += 1
        else:
            r.rr(qname, DNS_TXT, z["ttl"], bytes([len(z["txt"])]) + z["txt"])
            answers = 1
        if edns:
            r.buf += OPT_RR
        # response, RD, RA, rcode; the counts
        struct.pack_into("!HHHHH", r.buf, 2, 0x8180 | rcode, 1, answers, authority, int(edns))
        cache[key] = q.body(), r.body()
        return cache[key]

    clients = [ipv4(10, 1, rng.randrange(256), 1 + rng.randrange(254)) for _ in range(400)]
    resolvers = [ipv4(192, 0, 2, 53), ipv4(198, 51, 100, 53), ipv4(203, 0, 113, 53),
                 ipv4(10, 0, 0, 53)]
    ip_id = {}
    pending = []  # (packet index due, query number, response frame): the answers to come
    qtypes = [DNS_A] * 12 + [DNS_AAAA] * 6 + [DNS_MX, DNS_TXT]

    def packet(src, dst, sport, dport, dns_msg):
        ident = ip_id.get(src, 0)
        ip_id[src] = (ident + 1) & 0xFFFF
        return (mac(dst) + mac(src) + b"\x08\x00"
                + IP.pack(0x45, 0, 28 + len(dns_msg), ident, 0, 64, 17, 0, src, dst)
                + UDP.pack(sport, dport, 8 + len(dns_msg), 0) + dns_msg)

    def frame(i):
        if pending and pending[0][0] <= i:
            return heapq.heappop(pending)[2]
        c = rng.randrange(400)
        client, resolver = clients[c], resolvers[c % 4]
        k = bisect.bisect(cum, rng.random() * total)
        query, response = bodies(k, rng.choice(qtypes), c % 2 == 0)
        txid = rng.getrandbits(16).to_bytes(2, "big")
        sport = rng.randint(1024, 65535)
        heapq.heappush(pending, (i + rng.randint(1, 40), i,
                                 packet(resolver, client, 53, sport, txid + response)))
        return packet(client, resolver, sport, 53, txid + query)
    return records(n, rate, frame)

SHAPES = {"syn-flood": (syn_flood, 50_000), "udp-scan": (udp_scan, 50_000),
          "udp-flows": (udp_flows, 10_000), "tcp-small": (tcp_small, 20_000),
          "dns": (dns, 20_000)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shape", choices=sorted(SHAPES))
    p.add_argument("packets", type=int)
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--rate", type=float, help="packets per second of capture time "
                   "[default: 50000; udp-flows 10000; tcp-small, dns 20000]")
    a = p.parse_args()
    if a.packets < 0 or (a.rate is not None and a.rate <= 0):
        p.error("PACKETS must be >= 0 and --rate > 0")
    gen, rate = SHAPES[a.shape]
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(PCAP_HEADER)
        for buf in gen(a.packets, random.Random(a.seed), a.rate or rate):
            f.write(b"".join(buf))
    os.replace(tmp, a.out)


if __name__ == "__main__":
    sys.exit(main())
