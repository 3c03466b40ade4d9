//! Just enough DER to read an X.509 certificate's validity period, which rustls-webpki parses
//! but does not expose for a certificate checked without a chain.

/// `notBefore` and `notAfter` in seconds since the Unix epoch.
pub(crate) fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let (certificate, _) = tlv(cert, 0x30)?;
    let (tbs, _) = tlv(certificate, 0x30)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest, 0xa0)?.1;
    }
    rest = tlv(rest, 0x02)?.1; // serialNumber
    rest = tlv(rest, 0x30)?.1; // signature AlgorithmIdentifier
    rest = tlv(rest, 0x30)?.1; // issuer Name
    let (validity, _) = tlv(rest, 0x30)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

/// One element with tag `tag`: (its contents, what follows it).
fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049 as RFC 5280 says) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`): (seconds since the epoch, what follows).
fn time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (digits, year) = match input.first()? {
        0x17 => {
            let (v, _) = tlv(input, 0x17)?;
            let yy = number(v.get(..2)?)?;
            (v.get(2..)?, if yy < 50 { 2000 + yy } else { 1900 + yy })
        }
        0x18 => {
            let (v, _) = tlv(input, 0x18)?;
            (v.get(4..)?, number(v.get(..4)?)?)
        }
        _ => return None,
    };
    let rest = tlv(input, input[0])?.1;
    // MMDDHHMMSSZ: RFC 5280 requires seconds and 'Z'.
    if digits.len() != 11 || digits[10] != b'Z' {
        return None;
    }
    let field = |i: usize| number(&digits[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (h, m, s) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + h * 3600 + m * 60 + s, rest))
}

fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2049, 12, 31), 29_219);
    }

    #[test]
    fn times() {
        let utc = b"\x17\x0d491231235959Z";
        assert_eq!(time(utc), Some((2_524_607_999, &[][..])));
        let utc_1950 = b"\x17\x0d500101000000Z";
        assert_eq!(time(utc_1950).map(|t| t.0), Some(-631_152_000));
        let general = b"\x18\x0f20500101000000Zrest";
        assert_eq!(time(general), Some((2_524_608_000, &b"rest"[..])));
        // No seconds, a time zone offset, a bad month, truncated.
        assert_eq!(time(b"\x17\x0b4912312359Z"), None);
        assert_eq!(time(b"\x17\x11491231235959+0100"), None);
        assert_eq!(time(b"\x17\x0d491331235959Z"), None);
        assert_eq!(time(b"\x17\x0d4912"), None);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(validity(b"\x30\x03\x30\x01\x02"), None);
    }
}
