#!/usr/bin/env python3
"""Build the fuzz targets' seed corpora from a directory of captures (see fuzz/seed.sh).

usage: seed.py CAPTURES_DIR OUT_DIR

Writes OUT_DIR/<target>/<sha1 of the input>, in the layouts pcaplab_core::fuzzing documents:

  capture      each capture file (plain, gzip, zstd), cut to its first few KiB
  compressed   [codec] + a capture's first bytes, decompressed (the target compresses them)
  link         [selector] + one frame, per link type; UDP and IP tunnel payloads behind a
               tunnel carrier's selector
  fragments    [config] + a capture's first frames as raw-frame records, and IP fragments
               built from records (in order, reversed, overlapping, over 65,535 bytes)
  app          [selector] + a TCP or UDP payload of a port the application parsers read
  messages     [config] + a capture's TCP segments as segment records (over 255 bytes: split)
  reassembler  [config] + fragment records (made here)
  quic         [config] + a capture's QUIC long-header datagrams on port 443 as they are; and
               the first TLS ClientHellos a capture sends over TCP as CRYPTO frames of Initial
               packets the target protects: whole, split over two packets in and out of order,
               behind PING and ACK frames, beside a second connection

Only the standard library: pcap, pcapng and snoop are read here (zstd needs the zstd tool).
Nothing of a capture is written anywhere but OUT_DIR.
"""

import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys

CAPTURE_BYTES = 4096  # a capture seed's size
FRAME_BYTES = 2048  # a frame seed's size
FRAMES_PER_FILE = 64  # frames taken from each capture for the per-frame targets
RECORDS_PER_FILE = 40  # frames of a capture in one fragments / messages seed
HELLOS_PER_FILE = 4  # TLS ClientHellos of a capture made into quic seeds
QUIC_SEED_BYTES = 16000  # a capture's QUIC datagrams in one quic seed (under its max_len)

# The order of pcaplab_core::fuzzing::LINK_TYPES and CARRIERS (the selectors).
LINK_TYPES = [0, 1, 9, 12, 14, 50, 51, 101, 105, 108, 113, 127, 228, 229, 276]
CARRIERS = [("udp", 4789), ("udp", 8472), ("udp", 6081), ("udp", 4754), ("udp", 2152),
            ("udp", 3544), ("udp", 5072), ("ip", 47), ("ip", 4), ("ip", 41)]
SELECTORS = len(LINK_TYPES) + len(CARRIERS) + 1
APP_PORTS = [(17, 53), (17, 5353), (17, 5355), (17, 1900), (6, 53), (6, 443), (6, 80),
             (6, 8080), (17, 9999), (132, 80), (17, 67), (6, 22)]
# The selectors whose port has no application parser.
NO_PARSER = {(17, 9999), (132, 80)}

SNOOP_LINK = {0: 1, 4: 1, 8: 101, 0x12: 1}


def read_maybe_compressed(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return raw, gzip.decompress(raw)
        except (OSError, EOFError):
            return raw, b""
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        if shutil.which("zstd"):
            r = subprocess.run(["zstd", "-dc"], input=raw, capture_output=True, check=False)
            return raw, r.stdout
        return raw, b""
    return raw, raw


def frames(data):
    """(link type, frame bytes) of a pcap, pcapng or snoop capture, as far as it is sound."""
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x34\xcd\xb2\xa1"):
        yield from pcap_frames(data, "<")
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d", b"\xa1\xb2\xcd\x34"):
        yield from pcap_frames(data, ">")
    elif magic == b"\x0a\x0d\x0d\x0a":
        yield from pcapng_frames(data)
    elif data.startswith(b"snoop\0\0\0"):
        yield from snoop_frames(data)


def pcap_frames(data, e):
    link = struct.unpack_from(e + "I", data, 20)[0] & 0xFFFF
    record = 16
    if data[:4] in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34"):
        record = 24  # Kuznetzov's modified pcap
    at = 24
    while at + record <= len(data):
        caplen = struct.unpack_from(e + "I", data, at + 8)[0]
        if caplen > 262144 or at + record + caplen > len(data):
            return
        yield link, data[at + record:at + record + caplen]
        at += record + caplen


def pcapng_frames(data):
    e = "<"
    links = []
    at = 0
    while at + 12 <= len(data):
        btype = struct.unpack_from(e + "I", data, at)[0]
        if btype == 0x0A0D0D0A:
            e = "<" if data[at + 8:at + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        blen = struct.unpack_from(e + "I", data, at + 4)[0]
        if blen < 12 or at + blen > len(data):
            return
        body = data[at + 8:at + blen - 4]
        if btype == 1 and len(body) >= 2:
            links.append(struct.unpack_from(e + "H", body, 0)[0])
        elif btype == 6 and len(body) >= 20:
            iface, _, _, caplen = struct.unpack_from(e + "IIII", body, 0)
            if iface < len(links):
                yield links[iface], body[20:20 + caplen]
        elif btype == 3 and len(body) >= 4 and links:
            yield links[0], body[4:]
        elif btype == 2 and len(body) >= 20:
            iface = struct.unpack_from(e + "H", body, 0)[0]
            caplen = struct.unpack_from(e + "I", body, 12)[0]
            if iface < len(links):
                yield links[iface], body[20:20 + caplen]
        at += blen


def snoop_frames(data):
    link = SNOOP_LINK.get(struct.unpack_from(">I", data, 12)[0], 1)
    at = 16
    while at + 24 <= len(data):
        _, caplen, reclen = struct.unpack_from(">III", data, at)
        if reclen < 24 or at + reclen > len(data):
            return
        yield link, data[at + 24:at + 24 + min(caplen, reclen - 24)]
        at += reclen


def transport(link, frame):
    """(ip version, ip proto, src port, dst port, seq, flags, payload, ip payload) of a frame,
    or None: Ethernet (VLAN tags), Linux SLL/SLL2, null/loop and raw IP."""
    if link == 1:
        if len(frame) < 14:
            return None
        etype, at = struct.unpack_from(">H", frame, 12)[0], 14
        while etype in (0x8100, 0x88A8, 0x9100) and len(frame) >= at + 4:
            etype, at = struct.unpack_from(">H", frame, at + 2)[0], at + 4
    elif link == 113 and len(frame) >= 16:
        etype, at = struct.unpack_from(">H", frame, 14)[0], 16
    elif link == 276 and len(frame) >= 20:
        etype, at = struct.unpack_from(">H", frame, 0)[0], 20
    elif link in (0, 108) and len(frame) >= 5:
        etype, at = (0x0800 if frame[4] >> 4 == 4 else 0x86DD), 4
    elif link in (101, 12, 14, 228, 229) and frame:
        etype, at = (0x0800 if frame[0] >> 4 == 4 else 0x86DD), 0
    else:
        return None
    ip = frame[at:]
    if etype == 0x0800 and len(ip) >= 20 and ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        if struct.unpack_from(">H", ip, 6)[0] & 0x3FFF:
            return None  # a fragment
        version, proto, l4 = 4, ip[9], ip[ihl:total if total >= ihl else len(ip)]
    elif etype == 0x86DD and len(ip) >= 40 and ip[0] >> 4 == 6:
        plen = struct.unpack_from(">H", ip, 4)[0]
        version, proto, l4 = 6, ip[6], ip[40:40 + plen if plen else len(ip)]
    else:
        return None
    if proto == 17 and len(l4) >= 8:
        sp, dp = struct.unpack_from(">HH", l4, 0)
        return version, proto, sp, dp, 0, 0, l4[8:], l4
    if proto == 6 and len(l4) >= 20:
        sp, dp, seq = struct.unpack_from(">HHI", l4, 0)
        off = (l4[12] >> 4) * 4
        return version, proto, sp, dp, seq, l4[13], l4[off:], l4
    return version, proto, 0, 0, 0, 0, b"", l4


class Out:
    def __init__(self, root):
        self.root = root
        self.count = {}

    def add(self, target, data):
        d = os.path.join(self.root, target)
        os.makedirs(d, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()
        path = os.path.join(d, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
            self.count[target] = self.count.get(target, 0) + 1


def raw_record(link, frame, step=1):
    """A fragments-target record holding a frame of the given link type as it is."""
    frame = frame[:0x3FFF]
    selector = LINK_TYPES.index(link) if link in LINK_TYPES else SELECTORS - 1
    if selector == SELECTORS - 1:
        frame = struct.pack(">H", link) + frame
        frame = frame[:0x3FFF]
    return bytes([0x80 | len(frame) >> 8, selector, len(frame) & 0xFF, step & 0xFF]) + frame


def frag_record(v6, more, cut, proto, ident, offset8, payload, step=1):
    h = (0x40 if v6 else 0) | (0x20 if more else 0) | (0x10 if cut else 0) | proto << 2 | ident
    return bytes([h]) + struct.pack(">HBB", offset8, len(payload), step & 0xFF) + payload


def varint(n):
    """A QUIC variable-length integer (RFC 9000, 16)."""
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return struct.pack(">H", 0x4000 | n)
    return struct.pack(">I", 0x80000000 | n)


def crypto_frame(offset, data):
    return b"\x06" + varint(offset) + varint(len(data)) + data


def quic_datagram(h, body):
    """A quic-target datagram: h bits 0-1 the connection, bit 2 from the server, bit 3 raw
    (else the frames of an Initial packet the target protects, packet number h >> 4)."""
    body = body[:0xFFFF]
    return bytes([h]) + struct.pack(">H", len(body)) + body


QUIC_RECORD_HEADER = len(quic_datagram(0, b""))  # h and the length


def client_hello_of(payload):
    """The TLS handshake message of a ClientHello record at the start of `payload`, as a
    QUIC CRYPTO stream carries it (no record header); None if there is none."""
    if len(payload) < 10 or payload[0] != 0x16 or payload[5] != 0x01:
        return None
    length = struct.unpack_from(">H", payload, 3)[0]
    return payload[5:5 + length]


def quic_hello_seeds(out, hello, n):
    """Seeds of the quic target carrying `hello` in CRYPTO frames: four layouts, each
    protected as one of the four versions the target knows."""
    ping_ack = b"\x01" + b"\x02\x00\x00\x00\x00"
    k = max(1, len(hello) // 2)
    first, rest = crypto_frame(0, hello[:k]), crypto_frame(k, hello[k:])
    layouts = [
        [quic_datagram(0x00, crypto_frame(0, hello) + bytes(64))],
        [quic_datagram(0x00, first), quic_datagram(0x10, rest)],
        [quic_datagram(0x10, rest), quic_datagram(0x00, first)],
        [quic_datagram(0x00, ping_ack + first), quic_datagram(0x04 | 0x08, b"\xc0"),
         quic_datagram(0x01, crypto_frame(0, hello)), quic_datagram(0x10, first + rest)],
    ]
    for i, datagrams in enumerate(layouts):
        config = n & 7 | ((n + i) & 3) << 3
        out.add("quic", bytes([config]) + b"".join(datagrams))


def synthetic(out):
    # fragments: a UDP datagram of 3 fragments (24 + 24 + 10 bytes), in every order, over both
    # IP versions, plus overlaps, a duplicate, a datagram over 65,535 bytes and a timeout.
    udp = struct.pack(">HHHH", 40000, 53, 58, 0) + bytes(range(50))
    parts = [(0, True, udp[:24]), (3, True, udp[24:48]), (6, False, udp[48:])]
    for v6 in (False, True):
        for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 0, 1, 2]):
            for config in (0x70, 0x13, 0x00):
                recs = [frag_record(v6, parts[i][1], False, 0, 1, parts[i][0], parts[i][2])
                        for i in order]
                out.add("fragments", bytes([config]) + b"".join(recs))
        overlap = [frag_record(v6, True, False, 0, 2, 0, udp[:32]),
                   frag_record(v6, False, False, 0, 2, 3, b"X" * 34)]
        out.add("fragments", bytes([0x70]) + b"".join(overlap))
        big = [frag_record(v6, True, False, 0, 3, 0, udp[:16]),
               frag_record(v6, False, False, 0, 3, 0x1FFF, b"Y" * 200)]
        out.add("fragments", bytes([0x72]) + b"".join(big))
        late = [frag_record(v6, True, False, 1, 0, 0, udp[:24], 1),
                frag_record(v6, False, False, 1, 0, 3, udp[24:48], 100)]
        out.add("fragments", bytes([0x70]) + b"".join(late))
        cut = [frag_record(v6, True, True, 0, 1, 0, udp[:24]),
               frag_record(v6, False, False, 0, 1, 3, udp[24:])]
        out.add("fragments", bytes([0x70]) + b"".join(cut))
    # reassembler: [h][offset u16][len u8][step i8][data]
    def r(key, more, offset, data, step=1, cut=False, hi=0):
        h = key | (4 if more else 0) | (8 if cut else 0) | hi << 4
        return bytes([h]) + struct.pack(">HBB", offset, len(data) & 0xFF, step & 0xFF) + data
    blob = bytes(range(64))
    seqs = [
        [r(0, True, 0, blob[:16]), r(0, True, 16, blob[16:40]), r(0, False, 40, blob[40:])],
        [r(1, False, 40, blob[40:]), r(1, True, 16, blob[16:40]), r(1, True, 0, blob[:16])],
        [r(2, True, 0, blob[:32]), r(2, True, 8, b"Z" * 32), r(2, False, 40, blob[40:])],
        [r(3, True, 0, blob[:8]), r(3, False, 65530, blob[:8])],
        [r(0, True, 0, blob[:8], 1), r(0, False, 8, blob[:8], 100)],
        [r(k & 3, True, 64 * k, blob) for k in range(12)],
        [r(0, True, 0, blob[:8], cut=True), r(0, False, 8, blob[:8])],
        [r(1, False, 0, b"", 0x80), r(2, True, 0, blob, 0x80), r(2, False, 64, blob, 0x80)],
    ]
    for i, recs in enumerate(seqs):
        out.add("reassembler", bytes([i & 15]) + b"".join(recs))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    out = Out(dst)
    synthetic(out)
    names = sorted(n for n in os.listdir(src) if os.path.isfile(os.path.join(src, n)))
    for n, name in enumerate(names):
        path = os.path.join(src, name)
        raw, data = read_maybe_compressed(path)
        found = list(frames(data))
        if not found and raw is data:
            continue  # not a capture (manifests, scripts, notes)
        out.add("capture", raw[:CAPTURE_BYTES])
        if data and data is not raw:
            out.add("capture", data[:CAPTURE_BYTES])
        if data:
            out.add("compressed", bytes([n % 2 | (2 if n % 4 == 0 else 0) | (n % 3) << 6]) + data[:CAPTURE_BYTES // 2])
        # fragments: raw-frame records; captures with fragments first of all.
        records = [raw_record(link, f[:1600]) for link, f in found[:RECORDS_PER_FILE]]
        if records:
            out.add("fragments", bytes([0x70 | n & 15]) + b"".join(records))
        segments = []
        apps = 0
        hellos = 0
        quic, quic_conns = bytearray(), {}
        for i, (link, f) in enumerate(found):
            if i < FRAMES_PER_FILE:
                if link in LINK_TYPES:
                    out.add("link", bytes([LINK_TYPES.index(link)]) + f[:FRAME_BYTES])
                else:
                    out.add("link", bytes([SELECTORS - 1]) + struct.pack(">H", link) + f[:FRAME_BYTES])
            t = transport(link, f)
            if t is None:
                continue
            version, proto, sp, dp, seq, flags, payload, l4 = t
            v6 = SELECTORS if version == 6 else 0
            for c, (kind, value) in enumerate(CARRIERS):
                if (kind == "udp" and proto == 17 and value in (sp, dp)) or \
                        (kind == "ip" and proto == value):
                    body = payload if kind == "udp" else l4
                    out.add("link", bytes([len(LINK_TYPES) + c + v6]) + body[:FRAME_BYTES])
            for a, (p, port) in enumerate(APP_PORTS):
                if (p, port) in NO_PARSER:
                    continue
                interesting = proto == 17 or payload[:1] == b"\x16" or \
                    payload[:1].isupper() or port == 53
                if p == proto and port in (sp, dp) and payload and interesting and apps < 64:
                    apps += 1
                    flip = len(APP_PORTS) if sp == port else 0
                    out.add("app", bytes([a + flip]) + payload[:FRAME_BYTES])
            hello = client_hello_of(payload) if proto == 6 else None
            if hello and hellos < HELLOS_PER_FILE:
                hellos += 1
                quic_hello_seeds(out, hello, n + hellos)
            if proto == 17 and 443 in (sp, dp) and payload[:1] >= b"\x80" and \
                    len(quic) + QUIC_RECORD_HEADER + len(payload) <= QUIC_SEED_BYTES:
                conn = quic_conns.setdefault((min(sp, dp), max(sp, dp)), len(quic_conns) & 3)
                quic += quic_datagram(conn | (4 if sp == 443 else 0) | 8, payload)
            if proto == 6 and payload and len(segments) < RECORDS_PER_FILE and i < 2000:
                conn = (min(sp, dp) ^ max(sp, dp)) & 7
                server = 53 if 53 in (sp, dp) else None
                h = conn | (8 if sp < dp else 0) | (0x10 if server else 0)
                for k in range(0, min(len(payload), 4096), 255):
                    piece = payload[k:k + 255]
                    # the first piece at its real sequence number, the rest in order
                    if k == 0:
                        segments.append(bytes([h | 0xC0, flags, len(piece)])
                                        + struct.pack(">I", seq) + piece)
                    else:
                        segments.append(bytes([h, flags, len(piece)]) + piece)
        if segments:
            out.add("messages", bytes([n & 7]) + b"".join(segments))
        if quic:
            out.add("quic", bytes([n & 7]) + quic)
    # Generic TCP seeds for the app target: DNS over TCP, TLS and HTTP starts.
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x03www\x00\x00\x01\x00\x01"
    out.add("app", bytes([4]) + struct.pack(">H", len(query)) + query)
    out.add("app", bytes([6]) + b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    for target in sorted(out.count):
        print(f"{target}: {out.count[target]} seeds")


if __name__ == "__main__":
    main()
