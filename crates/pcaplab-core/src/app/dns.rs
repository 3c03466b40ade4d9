//! DNS messages: the first question's name and QTYPE, the header's RCODE and the answer
//! section's texts.
//!
//! The message is walked in place: names are read label by label (following compression
//! pointers) straight into the text that is kept, and nothing else is allocated. What is
//! accepted is exactly what simple-dns 0.13 (which this module replaced) accepted, since the
//! fields depend on it: a message it rejects — a QTYPE or QCLASS it does not know, a class it
//! does not know in any record, the reserved Z bit, a malformed rdata of a type it knows,
//! sections cut short — gives its first question only (see [`first_question`]). The tests
//! hold simple-dns as a reference and compare both on made-up, mutated and captured messages.
//!
//! Never panics on any input bytes.

use std::fmt::Write as _;

use super::{AppFields, Parsed, SpareText};

const DNS_HEADER_LEN: usize = 12;
/// Smallest possible question on the wire: root name (1) + QTYPE + QCLASS.
const DNS_MIN_QUESTION: usize = 5;
/// Smallest possible resource record: root name (1) + TYPE, CLASS, TTL, RDLENGTH.
const DNS_MIN_RR: usize = 11;
/// A name whose labels take this many bytes (each with its length byte) is rejected.
const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;
/// The reserved Z bit of the header's flags (in byte 3).
const Z_BIT: u8 = 0x40;

const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_CNAME: u16 = 5;
const TYPE_PTR: u16 = 12;
const TYPE_MX: u16 = 15;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;

pub(super) fn dns_over_tcp(payload: &[u8], out: &mut AppFields) -> Parsed {
    let Some(len) = be16(payload, 0) else {
        return Parsed::Nothing;
    };
    let len = usize::from(len);
    match payload.get(2..2 + len) {
        Some(msg) => {
            dns_message(msg, out);
            Parsed::Complete
        }
        // The message continues in the next segments.
        None if len >= DNS_HEADER_LEN => Parsed::Partial,
        None => Parsed::Nothing,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at + 2) {
        Some(&[h, l]) => Some(u16::from_be_bytes([h, l])),
        _ => None,
    }
}

/// Decode one DNS message (without TCP length prefix) into `out`'s DNS fields (which are
/// empty on entry).
pub(super) fn dns_message(msg: &[u8], out: &mut AppFields) {
    if msg.len() < DNS_HEADER_LEN {
        return;
    }
    // The header's QR bit and 4-bit RCODE (simple-dns folded the EDNS extended RCODE into
    // its value; we want the header's).
    let is_response = msg[2] & 0x80 != 0;
    let rcode = msg[3] & 0x0f;
    if whole_message(msg, is_response, out).is_some() {
        if is_response {
            out.dns_rcode = Some(rcode);
        }
        return;
    }
    out.clear_dns();
    // Rejected for something an analyst does not care about here: still report the
    // question, as tshark does.
    if let Some(qtype) = first_question(msg, out) {
        out.dns_qtype = Some(qtype);
        if is_response {
            out.dns_rcode = Some(rcode);
        }
    }
}

/// The whole message, as simple-dns's `Packet::parse` accepted it: the first question into
/// `out`, and the answers' texts when `is_response`. None when it would have been rejected
/// (`out` may then hold part of the fields).
fn whole_message(msg: &[u8], is_response: bool, out: &mut AppFields) -> Option<()> {
    if msg[3] & Z_BIT != 0 {
        return None;
    }
    let [qd, an, ns, ar] = [4, 6, 8, 10].map(|at| usize::from(be16(msg, at).unwrap_or(0)));
    // Sections that cannot fit: rejected without a look.
    if DNS_HEADER_LEN + qd * DNS_MIN_QUESTION + (an + ns + ar) * DNS_MIN_RR > msg.len() {
        return None;
    }
    let mut pos = DNS_HEADER_LEN;
    for i in 0..qd {
        pos = if i == 0 {
            let text = out.dns_qname.insert(out.spare.take());
            name(msg, pos, Some(text))?
        } else {
            name(msg, pos, None)?
        };
        let qtype = be16(msg, pos)?;
        let qclass = be16(msg, pos + 2)?;
        pos += 4;
        if !known_qtype(qtype) || !known_qclass(qclass & 0x7fff) {
            return None;
        }
        if i == 0 {
            out.dns_qtype = Some(qtype);
        }
    }
    for i in 0..an + ns + ar {
        let answers = (is_response && i < an).then_some((&mut out.dns_answers, &mut out.spare));
        pos = resource_record(msg, pos, answers)?;
    }
    Some(())
}

/// Header + first question only, as simple-dns parsed it on a patched copy of the message's
/// start: counts set to 1/0/0/0, Z bit cleared, QTYPE/QCLASS replaced by A/IN. The name goes
/// into `out.dns_qname`; returns the original QTYPE.
///
/// The copy matters: a compression pointer may lead into the patched bytes.
fn first_question(msg: &[u8], out: &mut AppFields) -> Option<u16> {
    if be16(msg, 4)? == 0 {
        return None;
    }
    // The end of the name where it starts, without following pointers.
    let mut pos = DNS_HEADER_LEN;
    loop {
        let b = *msg.get(pos)?;
        match b & 0xc0 {
            0x00 if b == 0 => {
                pos += 1;
                break;
            }
            0x00 => pos += 1 + usize::from(b),
            0xc0 => {
                pos += 2;
                break;
            }
            _ => return None, // extended label types: not supported
        }
    }
    let qtype = be16(msg, pos)?;
    let qend = pos + 4;
    // The labels before the first pointer take less than MAX_NAME_LEN bytes in a name that
    // is accepted: a longer start cannot give a question.
    let mut copy = [0u8; DNS_HEADER_LEN + MAX_NAME_LEN + 2 + 4];
    let buf = copy.get_mut(..qend)?;
    buf.copy_from_slice(msg.get(..qend)?);
    buf[3] &= !Z_BIT;
    buf[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    buf[pos..qend].copy_from_slice(&[0, 1, 0, 1]);
    let mut text = out.spare.take();
    let after = name(buf, DNS_HEADER_LEN, Some(&mut text))?;
    // QTYPE and QCLASS (A and IN) must follow.
    buf.get(after..after + 4)?;
    out.dns_qname = Some(text);
    Some(qtype)
}

/// Walk the name at `at` of `m` as simple-dns's `Name::parse` did, appending its text to
/// `text` when given (labels joined by '.', each label's bytes as lossy UTF-8 with '.' and
/// '\' escaped by a '\'; `<Root>` for the root). Returns where the name ends at `at` (after
/// its terminating zero or its first compression pointer). A malformed name leaves the text of
/// the labels read before the fault.
///
/// The text is gathered as bytes and made lossy UTF-8 once, not label by label: the same text,
/// as the bytes joining and escaping labels are ASCII, which ends any invalid sequence before
/// it as a label's end does.
fn name(m: &[u8], at: usize, text: Option<&mut String>) -> Option<usize> {
    let Some(t) = text else {
        return walk_name(m, at, |_| ());
    };
    let mut gathered = NameText::default();
    let end = walk_name(m, at, |label| gathered.label(label));
    if end.is_some() && gathered.labels == 0 {
        t.push_str("<Root>");
    } else {
        // Checked first: `from_utf8_lossy` walks even valid text chunk by chunk, slower.
        let bytes = gathered.text.as_bytes();
        match std::str::from_utf8(bytes) {
            Ok(valid) => t.push_str(valid),
            Err(_) => t.push_str(&String::from_utf8_lossy(bytes)),
        }
    }
    end
}

/// Walk the name at `at` of `m`, handing each label's bytes to `label` in order; returns
/// where the name ends at `at`, or `None` for a malformed name (after the labels read so far).
///
/// A pointer must lead strictly before itself, and the labels of all the parts may take at
/// most [`MAX_NAME_LEN`] - 1 bytes: every walk ends (a loop of pointers either goes backwards
/// without labels, or adds labels each time round).
fn walk_name(m: &[u8], at: usize, mut label: impl FnMut(&[u8])) -> Option<usize> {
    let mut pos = at;
    let mut end = None;
    let mut len = 0;
    loop {
        let b = *m.get(pos)?;
        pos += 1;
        if b == 0 {
            break;
        }
        if b & 0xc0 == 0xc0 {
            let target = usize::from(b & 0x3f) << 8 | usize::from(*m.get(pos)?);
            pos += 1;
            end.get_or_insert(pos);
            if target >= pos - 2 {
                return None;
            }
            pos = target;
            continue;
        }
        let l = usize::from(b);
        len += 1 + l;
        if len >= MAX_NAME_LEN || l > MAX_LABEL_LEN {
            return None;
        }
        label(m.get(pos..pos + l)?);
        pos += l;
    }
    Some(end.unwrap_or(pos))
}

/// A name's text as bytes, on the stack: its labels' bytes with '.' and '\\' escaped, joined
/// by '.'. It always fits: `walk_name` hands on labels of `n` bytes in all with their `k` length
/// bytes, `n + k` < [`MAX_NAME_LEN`], and the text takes at most `2n + k - 1` <
/// 2 × [`MAX_NAME_LEN`] bytes.
#[derive(Default)]
struct NameText {
    text: crate::text::Text<{ 2 * MAX_NAME_LEN }>,
    labels: usize,
}

impl NameText {
    fn label(&mut self, label: &[u8]) {
        if self.labels > 0 {
            self.text.put(b".");
        }
        self.labels += 1;
        if label.iter().any(|&b| b == b'.' || b == b'\\') {
            for &b in label {
                if b == b'.' || b == b'\\' {
                    self.text.put(b"\\");
                }
                self.text.put(&[b]);
            }
        } else {
            self.text.put(label);
        }
    }
}

/// QTYPEs simple-dns knew: the types it had a variant for, and IXFR, AXFR, MAILB, MAILA, ANY.
fn known_qtype(t: u16) -> bool {
    known_type(t) || (251..=255).contains(&t)
}

/// RR types simple-dns had a variant for (NULL included; X25 was not among them). Records of
/// other types are accepted as raw data.
fn known_type(t: u16) -> bool {
    matches!(
        t,
        1..=18 | 20..=23 | 28 | 29 | 33 | 35..=37 | 41 | 43 | 45..=49 | 63..=65 | 108 | 109 | 257
    )
}

/// IN, CS, CH, HS, NONE.
fn known_class(c: u16) -> bool {
    matches!(c, 1..=4 | 254)
}

/// A CLASS or ANY.
fn known_qclass(c: u16) -> bool {
    known_class(c) || c == 255
}

/// Walk the resource record at `at`; when `answers` is given, push its text (in a buffer of
/// the spare ones). Returns where it ends.
fn resource_record(
    m: &[u8],
    at: usize,
    answers: Option<(&mut Vec<String>, &mut SpareText)>,
) -> Option<usize> {
    let pos = name(m, at, None)?;
    let fixed = m.get(pos..pos + 10)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let start = pos + 10;
    let end = start + rdlen;
    // The rdata is read within itself, except for where compression pointers lead.
    let m = m.get(..end)?;
    if rtype == TYPE_OPT {
        // EDNS: options (code, length, data) to the end; its CLASS is the UDP payload size.
        let mut p = start;
        while p < end {
            p += 4 + usize::from(be16(m, p + 2)?);
        }
        if p > end {
            return None;
        }
    } else if (rdlen > 0 && rdata(m, start, rtype).is_none()) || !known_class(class & 0x7fff) {
        return None;
    }
    if let Some((answers, spare)) = answers {
        let mut text = spare.take();
        rdata_text(m, start, rtype, &mut text);
        answers.push(text);
    }
    Some(end)
}

/// Check the rdata at `at` (to the end of `m`) of a record of type `t` as simple-dns did.
fn rdata(m: &[u8], at: usize, t: u16) -> Option<()> {
    let end = m.len();
    let need = |p: usize, n: usize| (p + n <= end).then_some(p + n);
    let name_at = |p: usize| name(m, p, None);
    // <character-string>: a length byte and that many bytes.
    let chars = |p: usize| need(p + 1, usize::from(*m.get(p)?));
    match t {
        1 => need(at, 4)?,
        28 => need(at, 16)?,
        // NS, MD, MF, CNAME, MB, MG, MR, PTR, NSAP-PTR
        2..=5 | 7..=9 | 12 | 23 => name_at(at)?,
        // SOA: MNAME, RNAME, five 32-bit numbers
        6 => need(name_at(name_at(at)?)?, 20)?,
        // WKS: address, protocol, bitmap
        11 => need(at, 5)?,
        // HINFO, ISDN
        13 | 20 => chars(chars(at)?)?,
        // MINFO, RP
        14 | 17 => name_at(name_at(at)?)?,
        // MX, AFSDB, RT, KX: 16 bits then a name
        15 | 18 | 21 | 36 => name_at(need(at, 2)?)?,
        16 => {
            let mut p = at;
            while p < end {
                p = chars(p)?;
            }
            p
        }
        22 => need(at, 20)?,
        // LOC: version 0 only
        29 if m.get(at) == Some(&0) => need(at, 16)?,
        29 => return None,
        // SRV: priority, weight, port, target
        33 => name_at(need(at, 6)?)?,
        // NAPTR: order, preference, flags, services, regexp, replacement
        35 => name_at(chars(chars(chars(need(at, 4)?)?)?)?)?,
        // CERT
        37 => need(at, 5)?,
        // DS, DNSKEY
        43 | 48 => need(at, 4)?,
        // IPSECKEY: precedence, gateway type, algorithm, gateway
        45 => {
            let p = need(at, 3)?;
            match m[at + 1] {
                0 => p,
                1 => need(p, 4)?,
                2 => need(p, 16)?,
                3 => name_at(p)?,
                _ => return None,
            }
        }
        // RRSIG: 18 bytes, signer's name, signature
        46 => name_at(need(at, 18)?)?,
        // NSEC: next name, then (window, length <= 32, bitmap) with windows increasing
        47 => {
            let mut p = name_at(at)?;
            let mut previous = None;
            while p < end {
                let window = m[p];
                if previous.is_some_and(|w| window <= w) {
                    return None;
                }
                previous = Some(window);
                let len = usize::from(*m.get(p + 1)?);
                if len > 32 {
                    return None;
                }
                p = need(p + 2, len)?;
            }
            p
        }
        // DHCID
        49 => need(at, 3)?,
        // ZONEMD
        63 => need(at, 6)?,
        // SVCB, HTTPS
        64 | 65 => svcb(m, name_at(need(at, 2)?)?)?,
        // EUI48, EUI64
        108 => need(at, 6)?,
        109 => need(at, 8)?,
        // CAA: flags, tag, value
        257 => chars(need(at, 1)?)?,
        // NULL and the types simple-dns did not know: raw data.
        _ => at,
    };
    Some(())
}

/// SvcParams from `at` to the end of `m`: keys strictly increasing, each value well formed
/// for the keys simple-dns knew.
fn svcb(m: &[u8], at: usize) -> Option<usize> {
    let mut p = at;
    let mut previous = None;
    while p < m.len() {
        let key = be16(m, p)?;
        let len = usize::from(be16(m, p + 2)?);
        let value = m.get(p + 4..p + 4 + len)?;
        let ok = match key {
            // mandatory: keys; ipv4hint and ipv6hint: addresses
            0 => len % 2 == 0,
            4 => len % 4 == 0,
            6 => len % 16 == 0,
            // alpn: character-strings
            1 => {
                let mut q = 0;
                while q < len {
                    q += 1 + usize::from(value[q]);
                }
                q == len
            }
            // port
            3 => len >= 2,
            // ech: a 16-bit length and that many bytes
            5 => be16(value, 0).is_some_and(|l| usize::from(l) == len - 2),
            _ => true,
        };
        if !ok || previous.is_some_and(|k| key <= k) {
            return None;
        }
        previous = Some(key);
        p += 4 + len;
    }
    Some(p)
}

/// An answer's text, into the empty `s`: A/AAAA -> address, CNAME/NS/PTR -> name, MX ->
/// "<pref> <name>", TXT -> strings joined (lossy UTF-8), anything else, and any empty rdata
/// -> "TYPE<n>". The rdata at `at` (to the end of `m`) is well formed.
fn rdata_text(m: &[u8], at: usize, t: u16, s: &mut String) {
    let rdata = &m[at..];
    match (t, rdata) {
        (_, []) | (TYPE_OPT, _) => {
            let _ = write!(s, "TYPE{t}");
        }
        (TYPE_A, &[a, b, c, d, ..]) => {
            let (text, n) = crate::text::ipv4_text(&[a, b, c, d]);
            crate::text::push_ascii(s, &text[..n]);
        }
        (TYPE_AAAA, _) if rdata.len() >= 16 => {
            let mut v6 = [0u8; 16];
            v6.copy_from_slice(&rdata[..16]);
            let (text, n) = crate::text::ipv6_text(&v6);
            crate::text::push_ascii(s, &text[..n]);
        }
        (TYPE_CNAME | TYPE_NS | TYPE_PTR, _) => {
            s.reserve(64);
            let _ = name(m, at, Some(s));
        }
        (TYPE_MX, &[h, l, ..]) => {
            s.reserve(64);
            let _ = write!(s, "{} ", u16::from_be_bytes([h, l]));
            let _ = name(m, at + 2, Some(s));
        }
        (TYPE_TXT, _) => {
            // The strings' bytes joined, then decoded (a character may span two strings).
            let mut bytes = Vec::with_capacity(rdata.len());
            let mut rest = rdata;
            while let Some((&len, tail)) = rest.split_first() {
                let (string, tail) = tail.split_at(usize::from(len).min(tail.len()));
                bytes.extend_from_slice(string);
                rest = tail;
            }
            *s = match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
        }
        _ => {
            let _ = write!(s, "TYPE{t}");
        }
    }
}

/// The implementation this module replaced, on simple-dns: what the new one must equal.
#[cfg(test)]
pub(super) mod reference {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use simple_dns::Packet;
    use simple_dns::rdata::RData;

    use super::{AppFields, DNS_HEADER_LEN, DNS_MIN_QUESTION, DNS_MIN_RR, be16};

    /// Decode one DNS message (without TCP length prefix).
    pub fn dns_message(msg: &[u8], out: &mut AppFields) {
        if msg.len() < DNS_HEADER_LEN {
            return;
        }
        // Header fields read directly: QR bit and the 4-bit RCODE (simple-dns
        // folds the EDNS extended RCODE into its value; we want the header's).
        let is_response = msg[2] & 0x80 != 0;
        let rcode = msg[3] & 0x0f;

        // Counts plausibility: if the sections cannot fit, simple-dns would fail
        // anyway (after pre-allocating up to 65535 entries per section), so skip
        // straight to the question-only fallback.
        let counts: [usize; 4] = [4, 6, 8, 10].map(|at| usize::from(be16(msg, at).unwrap_or(0)));
        let min_len = DNS_HEADER_LEN
            + counts[0] * DNS_MIN_QUESTION
            + (counts[1] + counts[2] + counts[3]) * DNS_MIN_RR;

        if min_len <= msg.len()
            && let Ok(packet) = Packet::parse(msg)
        {
            if let Some(q) = packet.questions.first() {
                out.dns_qname = Some(name_text(&q.qname));
                out.dns_qtype = Some(u16::from(q.qtype));
            }
            if is_response {
                out.dns_rcode = Some(rcode);
                out.dns_answers
                    .extend(packet.answers.into_iter().map(|rr| rdata_text(rr.rdata)));
            }
            return;
        }

        // simple-dns rejects the whole message for things an analyst does not
        // care about here (QTYPE/QCLASS it does not know, a class it does not know
        // in any record, the reserved Z bit, a malformed rdata of a known type,
        // truncated answer sections, ...). Still report the question, as tshark
        // does, decoded by simple-dns itself.
        if let Some((qname, qtype)) = dns_first_question(msg) {
            out.dns_qname = Some(qname);
            out.dns_qtype = Some(qtype);
            if is_response {
                out.dns_rcode = Some(rcode);
            }
        }
    }

    /// Header + first question only, parsed with simple-dns on a patched copy:
    /// counts set to 1/0/0/0, Z bit cleared, QTYPE/QCLASS replaced by A/IN (the
    /// original QTYPE is returned). Names are decoded (including compression
    /// pointers) by simple-dns; here the name is only skipped to find its end.
    fn dns_first_question(msg: &[u8]) -> Option<(String, u16)> {
        if be16(msg, 4)? == 0 {
            return None;
        }
        let mut pos = DNS_HEADER_LEN;
        loop {
            let b = *msg.get(pos)?;
            match b & 0xc0 {
                0x00 if b == 0 => {
                    pos += 1;
                    break;
                }
                0x00 => pos += 1 + usize::from(b),
                0xc0 => {
                    pos += 2;
                    break;
                }
                _ => return None, // extended label types: not supported
            }
        }
        let qtype = be16(msg, pos)?;
        let qend = pos + 4;
        let mut buf = msg.get(..qend)?.to_vec();
        buf[3] &= !0x40; // reserved Z bit
        buf[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf[pos..qend].copy_from_slice(&[0, 1, 0, 1]);
        let packet = Packet::parse(&buf).ok()?;
        let q = packet.questions.first()?;
        Some((name_text(&q.qname), qtype))
    }

    fn name_text(name: &simple_dns::Name<'_>) -> String {
        if name.get_labels().is_empty() {
            "<Root>".to_owned()
        } else {
            name.to_string()
        }
    }

    fn rdata_text(rdata: RData<'_>) -> String {
        match rdata {
            RData::A(a) => Ipv4Addr::from(a.address).to_string(),
            RData::AAAA(a) => Ipv6Addr::from(a.address).to_string(),
            RData::CNAME(n) => name_text(&n.0),
            RData::NS(n) => name_text(&n.0),
            RData::PTR(n) => name_text(&n.0),
            RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
            RData::TXT(txt) => String::try_from(txt)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            other => format!("TYPE{}", u16::from(other.type_code())),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::app::tests::{XorShift, run};
    use crate::app::{IPPROTO_TCP, IPPROTO_UDP};
    use simple_dns::Packet;
    use std::net::Ipv6Addr;

    // ---- DNS builders ----

    fn dns_header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
        [id, flags, qd, an, ns, ar]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    fn push_name(buf: &mut Vec<u8>, name: &str) {
        for label in name.split('.').filter(|l| !l.is_empty()) {
            buf.push(u8::try_from(label.len()).expect("label length"));
            buf.extend_from_slice(label.as_bytes());
        }
        buf.push(0);
    }

    fn push_question(buf: &mut Vec<u8>, name: &str, qtype: u16, qclass: u16) {
        push_name(buf, name);
        buf.extend_from_slice(&qtype.to_be_bytes());
        buf.extend_from_slice(&qclass.to_be_bytes());
    }

    /// RR whose owner is a compression pointer; returns the rdata offset.
    fn push_rr(buf: &mut Vec<u8>, owner_ptr: u16, rtype: u16, rdata: &[u8]) -> usize {
        buf.extend_from_slice(&(0xc000 | owner_ptr).to_be_bytes());
        buf.extend_from_slice(&rtype.to_be_bytes());
        buf.extend_from_slice(&1u16.to_be_bytes()); // IN
        buf.extend_from_slice(&3600u32.to_be_bytes());
        buf.extend_from_slice(&u16::try_from(rdata.len()).expect("rdlen").to_be_bytes());
        let at = buf.len();
        buf.extend_from_slice(rdata);
        at
    }

    pub(crate) fn dns_query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = dns_header(0x1234, 0x0100, 1, 0, 0, 0);
        push_question(&mut q, name, qtype, 1);
        q
    }

    /// www.example.com A -> CNAME web.example.com (compressed), A, AAAA.
    pub(crate) fn dns_response() -> Vec<u8> {
        let mut r = dns_header(0x1234, 0x8180, 1, 3, 0, 0);
        push_question(&mut r, "www.example.com", 1, 1);
        let example = 12 + 4; // offset of "example.com" inside the question
        // CNAME rdata: "web" + pointer to "example.com"
        let mut cname = vec![3, b'w', b'e', b'b'];
        cname.extend_from_slice(&(0xc000u16 | example).to_be_bytes());
        let web = push_rr(&mut r, 12, 5, &cname);
        let web = u16::try_from(web).expect("offset");
        push_rr(&mut r, web, 1, &[93, 184, 216, 34]);
        let v6: Ipv6Addr = "2606:2800:220:1:248:1893:25c8:1946".parse().expect("v6");
        push_rr(&mut r, web, 28, &v6.octets());
        r
    }

    #[test]
    fn dns_query_fields() {
        let q = dns_query("www.example.com", 1);
        let f = run(IPPROTO_UDP, 40000, 53, &q);
        assert_eq!(f.dns_qname.as_deref(), Some("www.example.com"));
        assert_eq!(f.dns_qtype, Some(1));
        assert_eq!(f.dns_rcode, None);
        assert!(f.dns_answers.is_empty());
        assert!(f.tls_sni.is_none() && f.http_method.is_none());
    }

    #[test]
    fn dns_response_answers_with_compression() {
        let r = dns_response();
        let f = run(IPPROTO_UDP, 53, 40000, &r);
        assert_eq!(f.dns_qname.as_deref(), Some("www.example.com"));
        assert_eq!(f.dns_qtype, Some(1));
        assert_eq!(f.dns_rcode, Some(0));
        assert_eq!(
            f.dns_answers,
            vec![
                "web.example.com".to_owned(),
                "93.184.216.34".to_owned(),
                "2606:2800:220:1:248:1893:25c8:1946".to_owned(),
            ]
        );
    }

    #[test]
    fn dns_nxdomain() {
        let mut r = dns_header(7, 0x8183, 1, 0, 0, 0);
        push_question(&mut r, "nope.example", 28, 1);
        let f = run(IPPROTO_UDP, 53, 5000, &r);
        assert_eq!(f.dns_qname.as_deref(), Some("nope.example"));
        assert_eq!(f.dns_qtype, Some(28));
        assert_eq!(f.dns_rcode, Some(3));
        assert!(f.dns_answers.is_empty());
    }

    #[test]
    fn dns_mx_txt_and_other_types() {
        let mut r = dns_header(9, 0x8180, 1, 4, 0, 0);
        push_question(&mut r, "example.com", 255, 1);
        // MX 10 mail.example.com (compressed)
        let mut mx = 10u16.to_be_bytes().to_vec();
        mx.extend_from_slice(&[4, b'm', b'a', b'i', b'l', 0xc0, 12]);
        push_rr(&mut r, 12, 15, &mx);
        // TXT with two strings, one invalid UTF-8 byte
        push_rr(&mut r, 12, 16, b"\x05hello\x04w\xffld");
        // SOA-like known type we do not render, and an unknown type (99)
        push_rr(&mut r, 12, 33, &[0, 0, 0, 0, 0, 80, 0xc0, 12]); // SRV
        push_rr(&mut r, 12, 99, b"\x03spf");
        let f = run(IPPROTO_UDP, 53, 5000, &r);
        assert_eq!(f.dns_qtype, Some(255));
        assert_eq!(
            f.dns_answers,
            vec![
                "10 mail.example.com".to_owned(),
                "hellow\u{fffd}ld".to_owned(),
                "TYPE33".to_owned(),
                "TYPE99".to_owned(),
            ]
        );
    }

    #[test]
    fn dns_root_name() {
        let q = dns_query("", 2); // ". NS"
        let f = run(IPPROTO_UDP, 1024, 53, &q);
        assert_eq!(f.dns_qname.as_deref(), Some("<Root>"));
        assert_eq!(f.dns_qtype, Some(2));
    }

    #[test]
    fn mdns_and_llmnr() {
        // mDNS query with the unicast-response bit in QCLASS.
        let mut q = dns_header(0, 0, 1, 0, 0, 0);
        push_question(&mut q, "_googlecast._tcp.local", 12, 0x8001);
        let f = run(IPPROTO_UDP, 5353, 5353, &q);
        assert_eq!(f.dns_qname.as_deref(), Some("_googlecast._tcp.local"));
        assert_eq!(f.dns_qtype, Some(12));

        // mDNS announcement: no question, PTR answer with cache-flush class.
        let mut r = dns_header(0, 0x8400, 0, 1, 0, 0);
        r.extend_from_slice(&[5, b'_', b'h', b't', b't', b'p', 4, b'_', b't', b'c', b'p']);
        r.extend_from_slice(&[5, b'l', b'o', b'c', b'a', b'l', 0]);
        r.extend_from_slice(&[0, 12, 0x80, 1, 0, 0, 0, 120, 0, 7]);
        r.extend_from_slice(&[4, b'b', b'o', b'x', b'1', 0xc0, 12]);
        let f = run(IPPROTO_UDP, 5353, 5353, &r);
        assert_eq!(f.dns_qname, None);
        assert_eq!(f.dns_rcode, Some(0));
        assert_eq!(f.dns_answers, vec!["box1._http._tcp.local".to_owned()]);

        let q = dns_query("printer", 1);
        let f = run(IPPROTO_UDP, 61000, 5355, &q);
        assert_eq!(f.dns_qname.as_deref(), Some("printer"));

        // Same bytes on an unrelated UDP port: nothing.
        assert!(run(IPPROTO_UDP, 61000, 5356, &q).is_empty());
    }

    #[test]
    fn dns_over_tcp_length_prefix() {
        let r = dns_response();
        let mut seg = u16::try_from(r.len()).expect("len").to_be_bytes().to_vec();
        seg.extend_from_slice(&r);
        let f = run(IPPROTO_TCP, 53, 40000, &seg);
        assert_eq!(f.dns_qname.as_deref(), Some("www.example.com"));
        assert_eq!(f.dns_answers.len(), 3);

        // Message continues in the next segment: nothing.
        assert!(run(IPPROTO_TCP, 53, 40000, &seg[..seg.len() - 1]).is_empty());
        assert!(run(IPPROTO_TCP, 53, 40000, &seg[..1]).is_empty());
        // Without prefix it is not DNS over TCP.
        assert!(run(IPPROTO_TCP, 53, 40000, &r).dns_answers.is_empty());
    }

    #[test]
    fn dns_truncated() {
        let q = dns_query("www.example.com", 1);
        for cut in 0..q.len() {
            let f = run(IPPROTO_UDP, 40000, 53, &q[..cut]);
            assert!(f.is_empty(), "cut {cut}: {f:?}");
        }
        // Response cut inside the answer section (snap length): the question
        // is still reported, answers are not.
        let r = dns_response();
        let f = run(IPPROTO_UDP, 53, 40000, &r[..r.len() - 5]);
        assert_eq!(f.dns_qname.as_deref(), Some("www.example.com"));
        assert_eq!(f.dns_rcode, Some(0));
        assert!(f.dns_answers.is_empty());
    }

    #[test]
    fn dns_strictness_of_simple_dns_and_fallback() {
        // Unknown QTYPE (52 = TLSA): simple-dns rejects the whole message.
        let q = dns_query("_443._tcp.example.com", 52);
        assert!(Packet::parse(&q).is_err());
        let f = run(IPPROTO_UDP, 40000, 53, &q);
        assert_eq!(f.dns_qname.as_deref(), Some("_443._tcp.example.com"));
        assert_eq!(f.dns_qtype, Some(52));

        // Unknown QCLASS (0).
        let mut q = dns_header(1, 0x0100, 1, 0, 0, 0);
        push_question(&mut q, "a.example", 1, 0);
        assert!(Packet::parse(&q).is_err());
        assert_eq!(
            run(IPPROTO_UDP, 40000, 53, &q).dns_qname.as_deref(),
            Some("a.example")
        );

        // Reserved Z bit set.
        let mut q = dns_query("z.example", 1);
        q[3] |= 0x40;
        assert!(Packet::parse(&q).is_err());
        assert_eq!(
            run(IPPROTO_UDP, 40000, 53, &q).dns_qname.as_deref(),
            Some("z.example")
        );

        // Trailing bytes after the message are accepted by simple-dns.
        let mut q = dns_query("t.example", 1);
        q.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert!(Packet::parse(&q).is_ok());
        assert_eq!(
            run(IPPROTO_UDP, 40000, 53, &q).dns_qname.as_deref(),
            Some("t.example")
        );

        // Unknown RR type in the answers is fine (kept as raw data).
        let mut r = dns_header(2, 0x8180, 1, 1, 0, 0);
        push_question(&mut r, "x.example", 1, 1);
        push_rr(&mut r, 12, 0xff00, &[1, 2, 3]);
        assert!(Packet::parse(&r).is_ok());
        assert_eq!(
            run(IPPROTO_UDP, 53, 40000, &r).dns_answers,
            vec!["TYPE65280"]
        );

        // Forward compression pointer: rejected by simple-dns (no loops possible).
        let mut q = dns_header(3, 0x0100, 1, 0, 0, 0);
        q.extend_from_slice(&[0xc0, 30, 0, 1, 0, 1]);
        assert!(run(IPPROTO_UDP, 40000, 53, &q).is_empty());
        // Pointer to itself.
        let mut q = dns_header(3, 0x0100, 1, 0, 0, 0);
        q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(run(IPPROTO_UDP, 40000, 53, &q).is_empty());
    }

    // ---- the same fields as simple-dns ----

    /// The four DNS fields of `msg` by this module and by the reference, compared; whether
    /// the reference accepted the whole message (all its sections).
    fn same_as_reference(msg: &[u8]) -> bool {
        let mut ours = AppFields::default();
        dns_message(msg, &mut ours);
        let mut theirs = AppFields::default();
        reference::dns_message(msg, &mut theirs);
        assert_eq!(ours, theirs, "message {msg:02x?}");
        msg.len() >= DNS_HEADER_LEN && Packet::parse(msg).is_ok()
    }

    /// Every type simple-dns knew, some it did not (X25 among them), and the QTYPE-only ones.
    const TYPES: [u16; 50] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 28, 29,
        33, 35, 36, 37, 41, 43, 45, 46, 47, 48, 49, 63, 64, 65, 108, 109, 257, 0, 52, 99, 251, 252,
        255, 0xff00, 0xffff,
    ];
    const CLASSES: [u16; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 0x8001, 2, 3, 4, 254, 255, 0, 0x80ff];

    /// Random DNS messages built record by record, mostly well formed: names with labels that
    /// need escaping and compression pointers (backwards, forwards, to themselves), every
    /// rdata shape simple-dns checked, and lengths and counts that are sometimes off.
    struct Gen(XorShift);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0.below(n as u64)
        }
        fn one_in(&mut self, n: usize) -> bool {
            self.below(n) == 0
        }
        fn byte(&mut self) -> u8 {
            self.0.next().to_le_bytes()[2]
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.below(from.len())]
        }
        fn bytes(&mut self, buf: &mut Vec<u8>, n: usize) {
            for _ in 0..n {
                let b = self.byte();
                buf.push(b);
            }
        }
        fn u16(&mut self, buf: &mut Vec<u8>, v: u16) {
            buf.extend_from_slice(&v.to_be_bytes());
        }

        fn name(&mut self, buf: &mut Vec<u8>) {
            const ALPHABET: &[u8] = b"abcxyz-_09.\\ \x00\x7f\xc3\xa9\xff\xe2\x82";
            for _ in 0..self.pick(&[0, 1, 2, 2, 3, 3, 4, 6]) {
                let len = match self.below(40) {
                    0 => 63,
                    1 => 64 + self.below(3),
                    2..=3 => 40 + self.below(24),
                    _ => 1 + self.below(6),
                };
                buf.push(len as u8);
                for _ in 0..len {
                    let c = self.pick(ALPHABET);
                    buf.push(c);
                }
            }
            let here = buf.len();
            match self.below(20) {
                0..=11 => buf.push(0),
                12..=17 if here > DNS_HEADER_LEN => {
                    // Backwards, as compression does (into any earlier byte).
                    let to = DNS_HEADER_LEN + self.below(here - DNS_HEADER_LEN);
                    self.u16(buf, 0xc000 | to as u16);
                }
                18 => {
                    // Forwards, to itself, or anywhere.
                    let to = match self.below(3) {
                        0 => here,
                        1 => here + 1 + self.below(40),
                        _ => self.below(0x4000),
                    };
                    self.u16(buf, 0xc000 | (to & 0x3fff) as u16);
                }
                19 => buf.push(self.pick(&[0x40, 0x80, 0xc0])),
                _ => buf.push(0),
            }
        }

        fn chars(&mut self, buf: &mut Vec<u8>) {
            let len = self.pick(&[0, 1, 3, 5, 12, 255]);
            buf.push(len as u8);
            for _ in 0..len {
                let c = self.pick(b"ab=\x00\xc3\xa9\xff\xe2\x82\xac");
                buf.push(c);
            }
        }

        /// Rdata of type `t`, appended to the message (so that its pointers lead where they
        /// say).
        fn rdata(&mut self, buf: &mut Vec<u8>, t: u16) {
            match t {
                1 => self.bytes(buf, 4),
                28 => self.bytes(buf, 16),
                2..=5 | 7..=9 | 12 | 23 => self.name(buf),
                6 => {
                    self.name(buf);
                    self.name(buf);
                    self.bytes(buf, 20);
                }
                13 | 20 => {
                    self.chars(buf);
                    self.chars(buf);
                }
                14 | 17 => {
                    self.name(buf);
                    self.name(buf);
                }
                15 | 18 | 21 | 36 => {
                    self.bytes(buf, 2);
                    self.name(buf);
                }
                16 | 19 => {
                    for _ in 0..1 + self.below(3) {
                        self.chars(buf);
                    }
                }
                29 => {
                    buf.push(u8::from(self.one_in(8)));
                    self.bytes(buf, 15);
                }
                33 => {
                    self.bytes(buf, 6);
                    self.name(buf);
                }
                35 => {
                    self.bytes(buf, 4);
                    self.chars(buf);
                    self.chars(buf);
                    self.chars(buf);
                    self.name(buf);
                }
                45 => {
                    let gateway = self.pick(&[0, 1, 2, 3, 3, 4]);
                    buf.extend_from_slice(&[10, gateway, 2]);
                    match gateway {
                        1 => self.bytes(buf, 4),
                        2 => self.bytes(buf, 16),
                        3 => self.name(buf),
                        _ => {}
                    }
                    let n = self.below(8);
                    self.bytes(buf, n);
                }
                46 => {
                    self.bytes(buf, 18);
                    self.name(buf);
                    let n = self.below(8);
                    self.bytes(buf, n);
                }
                47 => {
                    self.name(buf);
                    let mut window = self.below(3) as u8;
                    for _ in 0..self.below(4) {
                        let len = self.pick(&[0, 1, 6, 32, 33]);
                        buf.extend_from_slice(&[window, len as u8]);
                        self.bytes(buf, len);
                        window = window.wrapping_add(self.pick(&[0, 1, 1, 2, 200]));
                    }
                }
                64 | 65 => {
                    self.bytes(buf, 2);
                    self.name(buf);
                    let mut key = self.below(2) as u16;
                    for _ in 0..self.below(5) {
                        let value: Vec<u8> = match key {
                            0 => vec![0, 1, 0, 4, self.byte()][..self.pick(&[2, 4, 5])].to_vec(),
                            1 => {
                                let mut v = vec![2, b'h', b'2', 8];
                                v.extend_from_slice(b"http/1.1");
                                v.truncate(self.pick(&[0, 3, 4, 12, 7]));
                                v
                            }
                            3 => vec![1, 187, 0][..self.below(4)].to_vec(),
                            4 => vec![1; self.pick(&[0, 4, 8, 5])],
                            5 => {
                                let n = self.below(6);
                                let mut v =
                                    (n as u16 + self.pick(&[0, 0, 1])).to_be_bytes().to_vec();
                                v.extend(std::iter::repeat_n(7, n));
                                v.truncate(self.pick(&[1, 40]));
                                v
                            }
                            6 => vec![2; self.pick(&[0, 16, 32, 15])],
                            _ => vec![9; self.below(4)],
                        };
                        self.u16(buf, key);
                        self.u16(buf, value.len() as u16);
                        buf.extend_from_slice(&value);
                        key = match self.below(8) {
                            0 => key,
                            1 => key.wrapping_sub(1),
                            2 => self.pick(&[7, 100, 0xffff]),
                            _ => key.wrapping_add(1),
                        };
                    }
                }
                41 => {
                    for _ in 0..self.below(3) {
                        let len = self.below(6);
                        self.u16(buf, 10);
                        self.u16(buf, len as u16);
                        self.bytes(buf, len);
                    }
                }
                257 => {
                    buf.push(0);
                    self.chars(buf);
                    let n = self.below(6);
                    self.bytes(buf, n);
                }
                // Fixed-length types (and raw data): about the right length.
                _ => {
                    let n = match t {
                        11 | 37 => 5,
                        22 => 20,
                        43 | 48 => 4,
                        49 => 3,
                        63 | 108 => 6,
                        109 => 8,
                        _ => self.below(10),
                    };
                    let n = n + self.below(3);
                    self.bytes(buf, n);
                }
            }
        }

        fn message(&mut self) -> Vec<u8> {
            let mut flags = (self.0.next() as u16) & !0x0040;
            if self.one_in(20) {
                flags |= 0x0040;
            }
            if self.below(4) > 0 {
                flags |= 0x8000;
            }
            let counts = [
                self.pick(&[0, 1, 1, 1, 2]),
                self.below(4),
                self.pick(&[0, 0, 0, 1]),
                self.pick(&[0, 0, 1, 2]),
            ];
            let mut m = dns_header(self.byte().into(), flags, 0, 0, 0, 0);
            for (i, &n) in counts.iter().enumerate() {
                m[4 + 2 * i..6 + 2 * i].copy_from_slice(&(n as u16).to_be_bytes());
            }
            for _ in 0..counts[0] {
                self.name(&mut m);
                let t = if self.one_in(3) { 1 } else { self.pick(&TYPES) };
                self.u16(&mut m, t);
                let c = self.pick(&CLASSES);
                self.u16(&mut m, c);
            }
            for _ in 0..counts[1] + counts[2] + counts[3] {
                self.name(&mut m);
                let t = self.pick(&TYPES);
                self.u16(&mut m, t);
                let c = self.pick(&CLASSES);
                self.u16(&mut m, c);
                self.bytes(&mut m, 4);
                let len_at = m.len();
                self.u16(&mut m, 0);
                if !self.one_in(10) {
                    self.rdata(&mut m, t);
                }
                let mut len = m.len() - len_at - 2;
                if self.one_in(12) {
                    len = (len + self.below(3)).saturating_sub(self.below(3));
                }
                m[len_at..len_at + 2].copy_from_slice(&(len as u16).to_be_bytes());
            }
            if self.one_in(10) {
                let n = self.below(5);
                self.bytes(&mut m, n);
            }
            m
        }

        /// `m` damaged: bytes changed, cut, counts set, a pointer loop written in.
        fn mutate(&mut self, m: &mut Vec<u8>) {
            match self.below(5) {
                0 => {
                    for _ in 0..1 + self.below(3) {
                        let at = self.below(m.len());
                        m[at] = self.byte();
                    }
                }
                1 => {
                    let cut = self.below(m.len() + 1);
                    m.truncate(cut);
                }
                2 if m.len() >= DNS_HEADER_LEN => {
                    let at = 4 + 2 * self.below(4);
                    let v = self.pick(&[0u16, 1, 2, 3, 0x8000, 0xffff]);
                    m[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
                3 if m.len() > DNS_HEADER_LEN + 2 => {
                    // A pointer to itself or to the one before it.
                    let at = DNS_HEADER_LEN + self.below(m.len() - DNS_HEADER_LEN - 1);
                    let to = if self.one_in(2) {
                        at
                    } else {
                        at.saturating_sub(2)
                    };
                    m[at..at + 2].copy_from_slice(&(0xc000 | to as u16).to_be_bytes());
                }
                _ => {
                    let at = self.below(m.len());
                    m[at] ^= 1 << self.below(8);
                }
            }
        }
    }

    #[test]
    fn same_as_simple_dns_on_made_up_messages() {
        let mut messages = vec![
            dns_query("www.example.com", 1),
            dns_query("", 2),
            dns_query("_443._tcp.example.com", 52),
            dns_response(),
        ];
        // Label texts: escapes, lossy UTF-8, a character split over two labels.
        let mut q = dns_header(1, 0x0100, 1, 0, 0, 0);
        for label in [
            &b"a.b"[..],
            b"c\\d",
            b"\xc3\xa9t\xc3",
            b"\xa9",
            b"\xff\x00 ",
        ] {
            q.push(label.len() as u8);
            q.extend_from_slice(label);
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        messages.push(q);
        // TXT: a character split over two strings; empty rdata of every type.
        let mut r = dns_header(2, 0x8180, 1, 2, 0, 0);
        push_question(&mut r, "t.example", 16, 1);
        push_rr(&mut r, 12, 16, b"\x02a\xe2\x02\x82\xac\x00");
        push_rr(&mut r, 12, 16, b"");
        messages.push(r);
        for t in TYPES {
            let mut r = dns_header(3, 0x8180, 1, 1, 0, 0);
            push_question(&mut r, "e.example", t, 1);
            push_rr(&mut r, 12, t, b"");
            messages.push(r);
        }
        // The pointer at the question's end leads to the patched header and type.
        let mut q = dns_header(4, 0x0140, 1, 0, 0, 0);
        q.extend_from_slice(&[1, b'x', 0xc0, 5, 0, 52, 0, 1]);
        messages.push(q);
        let mut accepted = 0;
        for m in &messages {
            accepted += usize::from(same_as_reference(m));
            for cut in 0..m.len() {
                same_as_reference(&m[..cut]);
            }
        }
        assert!(accepted > TYPES.len() / 2, "{accepted} accepted");
    }

    #[test]
    fn same_as_simple_dns_on_random_messages() {
        let mut g = Gen(XorShift(0x2545_f491_4f6c_dd1d));
        let (mut accepted, mut rejected, mut mutated) = (0, 0, 0);
        let mut with_answers = 0;
        let mut types_accepted = std::collections::BTreeSet::new();
        for _ in 0..40_000 {
            let mut m = g.message();
            if same_as_reference(&m) {
                accepted += 1;
                let p = Packet::parse(&m).expect("accepted");
                with_answers += usize::from(!p.answers.is_empty());
                types_accepted.extend(
                    p.answers
                        .iter()
                        .chain(&p.name_servers)
                        .chain(&p.additional_records)
                        .map(|rr| u16::from(rr.rdata.type_code())),
                );
            } else {
                rejected += 1;
            }
            for _ in 0..3 {
                if m.is_empty() {
                    break;
                }
                g.mutate(&mut m);
                mutated += usize::from(same_as_reference(&m));
            }
        }
        eprintln!(
            "{accepted} accepted ({with_answers} with answers), {rejected} rejected, \
             {mutated} mutated accepted"
        );
        // Both paths, and records of every type among the accepted.
        assert!(accepted > 4_000 && rejected > 4_000 && with_answers > 1_500);
        assert!(mutated > 2_000);
        for t in TYPES.into_iter().filter(|&t| !(251..=255).contains(&t)) {
            assert!(
                types_accepted.contains(&t),
                "no accepted record of type {t}"
            );
        }
    }

    /// Every UDP and TCP payload of the corpus captures (`$PCAPLAB_CORPUS`) whose frame holds
    /// it: the DNS ports' (the TCP ones with and without their length prefix), and the
    /// others', as garbage.
    #[test]
    fn same_as_simple_dns_on_the_corpus() {
        use crate::dissect::{Packet as Dissected, dissect};
        use crate::flows::{IPPROTO_TCP, IPPROTO_UDP};
        use crate::reader::Chunk;

        let Some(dir) = std::env::var_os("PCAPLAB_CORPUS").map(std::path::PathBuf::from) else {
            assert!(
                std::env::var_os("PCAPLAB_REQUIRE_ALL").is_none(),
                "PCAPLAB_CORPUS is not set and PCAPLAB_REQUIRE_ALL is: the corpus tests must run"
            );
            eprintln!(
                "\n*** SKIPPED: PCAPLAB_CORPUS is not set: DNS not compared on the corpus ***\n"
            );
            return;
        };
        let mut files = Vec::new();
        for manifest in ["manifest.csv", "manifest-depth.csv"] {
            let text = std::fs::read_to_string(dir.join(manifest)).expect("manifest");
            files.extend(
                text.lines()
                    .skip(1)
                    .filter_map(|l| l.split(',').next())
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned),
            );
        }
        let (mut dns, mut dns_accepted, mut others) = (0, 0, 0);
        let mut p = Dissected::default();
        for file in &files {
            let bytes = std::fs::read(dir.join(file)).expect("capture");
            let Ok(mut reader) = crate::CaptureReader::new(Box::new(std::io::Cursor::new(bytes)))
            else {
                continue;
            };
            loop {
                let mut chunk = Chunk::default();
                let more = reader.fill(&mut chunk, 4096, 1 << 22);
                for f in &chunk.frames {
                    let data = chunk.frame_data(f);
                    dissect(f.link_type, data, &mut p);
                    let (Some(ip), Some(sp), Some(dp), Some((off, len)), false) = (
                        p.ip,
                        p.src_port,
                        p.dst_port,
                        p.payload,
                        p.payload_in_datagram,
                    ) else {
                        continue;
                    };
                    let Some(payload) = data.get(off..off + len) else {
                        continue;
                    };
                    let port = |ports: &[u16]| ports.contains(&sp) || ports.contains(&dp);
                    match ip.proto {
                        IPPROTO_UDP if port(&[53, 5353, 5355]) => {
                            dns += 1;
                            dns_accepted += usize::from(same_as_reference(payload));
                        }
                        IPPROTO_TCP if port(&[53]) => {
                            same_as_reference(payload);
                            if let Some(msg) =
                                be16(payload, 0).and_then(|l| payload.get(2..2 + usize::from(l)))
                            {
                                dns += 1;
                                dns_accepted += usize::from(same_as_reference(msg));
                            }
                        }
                        IPPROTO_UDP | IPPROTO_TCP => {
                            others += 1;
                            same_as_reference(payload);
                        }
                        _ => {}
                    }
                }
                if !matches!(more, Ok(true)) {
                    break;
                }
            }
        }
        eprintln!(
            "{} captures: {dns} DNS messages ({dns_accepted} accepted whole), {others} other payloads",
            files.len()
        );
        assert!(
            dns > 100 && dns_accepted > 50,
            "too few DNS messages in the corpus"
        );
    }
}
