#!/usr/bin/env python3
"""Synthetic captures for the benchmarks: hostile traffic and flow-table stress.

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

Random values come from Python's random module seeded with --seed (default 16): the same
arguments write the same bytes. IPv4 and TCP/UDP checksums are left zero (nothing here checks
them); every length field is right. The file is written as OUT.tmp and renamed when complete,
so an interrupted run never leaves a short OUT behind for a script that reuses its inputs.
Python 3, standard library only; records are built in batches and written with one join per
100,000 packets (about 1-2 µs of Python per packet).
"""
import argparse
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


SHAPES = {"syn-flood": (syn_flood, 50_000), "udp-scan": (udp_scan, 50_000),
          "udp-flows": (udp_flows, 10_000)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shape", choices=sorted(SHAPES))
    p.add_argument("packets", type=int)
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--rate", type=float, help="packets per second of capture time "
                   "[default: 50000, udp-flows 10000]")
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
