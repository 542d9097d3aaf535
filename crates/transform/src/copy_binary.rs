//! Rows in `COPY`'s binary format: each value as Postgres stores it, so the server does not
//! parse text (timestamps, numbers, booleans, UUIDs). Measured on Postgres alone (README,
//! Benchmarks): the backend's CPU for a `COPY` of 100k Hotmart-like rows into a keyed table is
//! about a sixth lower than in the text format.
//!
//! A value is encoded from its canonical text (what [`Conversion`](crate::Conversion) writes),
//! exactly as the type's text input would read it: `numeric` keeps its display scale, and a
//! timestamp's fraction is rounded to microseconds as Postgres rounds it. Postgres still checks
//! every value it receives (ranges, UTF-8, JSON).

use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};

use crate::types::{ColumnType, NumericLiteral};

/// The signature, flags and header-extension length every binary `COPY` stream starts with.
pub const COPY_BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Seconds from the Unix epoch to Postgres' epoch, 2000-01-01 00:00:00 UTC.
const PG_EPOCH_SECONDS: i64 = 946_684_800;

/// Rows in `COPY`'s binary format for columns of `types`, appended to a byte buffer (without
/// the stream's [`COPY_BINARY_HEADER`]): each row its field count, each field its length (-1 for
/// NULL) and its bytes.
///
/// ```
/// use sluice_transform::{ColumnType, CopyBinary};
///
/// let mut rows = CopyBinary::new(Vec::new(), [ColumnType::Integer, ColumnType::Text].into());
/// rows.write_fields([Some("7"), None]).unwrap();
/// assert_eq!(rows.as_bytes(), b"\0\x02\0\0\0\x04\0\0\0\x07\xff\xff\xff\xff");
/// // A value that is not its column type's canonical text names the column.
/// let e = rows.write_fields([Some("seven"), Some("x")]).unwrap_err();
/// assert_eq!(e.to_string(), "column 0 (integer): not an integer");
/// ```
#[derive(Debug, Clone)]
pub struct CopyBinary {
    buf: Vec<u8>,
    types: Arc<[ColumnType]>,
}

/// A value that cannot be written in the binary format: its column's position and type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column} ({ty}): {reason}")]
pub struct EncodeError {
    pub column: usize,
    pub ty: ColumnType,
    pub reason: &'static str,
}

impl CopyBinary {
    /// Rows of columns `types` appended to `buf`.
    pub fn new(buf: Vec<u8>, types: Arc<[ColumnType]>) -> Self {
        Self { buf, types }
    }

    /// Appends one row (one field per column; `None` is NULL). On an error the row is not
    /// written.
    pub fn write_fields<I, S>(&mut self, fields: I) -> Result<(), EncodeError>
    where
        I: IntoIterator<Item = Option<S>>,
        S: AsRef<str>,
    {
        let start = self.buf.len();
        self.buf
            .extend_from_slice(&(self.types.len() as i16).to_be_bytes());
        for (column, (f, &ty)) in fields.into_iter().zip(self.types.iter()).enumerate() {
            let Some(f) = f else {
                self.buf.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            };
            let at = self.buf.len();
            self.buf.extend_from_slice(&[0; 4]);
            if let Err(reason) = encode_binary(ty, f.as_ref(), &mut self.buf) {
                self.buf.truncate(start);
                return Err(EncodeError { column, ty, reason });
            }
            let len = (self.buf.len() - at - 4) as i32;
            self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }

    /// The rows written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The rows written so far, leaving `next` (an empty buffer) in their place.
    pub fn take(&mut self, next: Vec<u8>) -> Vec<u8> {
        std::mem::replace(&mut self.buf, next)
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

/// The rows of a buffer that [`CopyBinary`] wrote (no stream header), read back one at a time.
/// Reading stops at the first row that does not fit in what is left: [`rest`](Self::rest) then
/// says how many bytes were not read.
///
/// ```
/// use sluice_transform::{BinaryRows, ColumnType, CopyBinary};
///
/// let mut rows = CopyBinary::new(Vec::new(), [ColumnType::Integer, ColumnType::Text].into());
/// rows.write_fields([Some("7"), None]).unwrap();
/// rows.write_fields([Some("8"), Some("x")]).unwrap();
/// let buf = rows.into_inner();
/// let mut read = BinaryRows::new(&buf);
/// let first = read.next().unwrap();
/// assert_eq!(first.fields().collect::<Vec<_>>(), [Some(&[0, 0, 0, 7][..]), None]);
/// assert_eq!(read.next().unwrap().fields().nth(1), Some(Some(&b"x"[..])));
/// assert!(read.next().is_none());
/// assert_eq!(read.rest(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct BinaryRows<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One row in `COPY`'s binary format: its bytes, from its field count to its last field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryRow<'a> {
    bytes: &'a [u8],
    /// Where the row starts in the buffer it was read from.
    pub offset: usize,
}

impl<'a> BinaryRows<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read: 0 once every row was read whole.
    pub fn rest(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl<'a> Iterator for BinaryRows<'a> {
    type Item = BinaryRow<'a>;

    fn next(&mut self) -> Option<BinaryRow<'a>> {
        let start = self.pos;
        let mut at = start;
        let count = i16::from_be_bytes(self.buf.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        for _ in 0..count {
            let len = i32::from_be_bytes(self.buf.get(at..at + 4)?.try_into().ok()?);
            at += 4 + usize::try_from(len).unwrap_or(0);
        }
        let bytes = self.buf.get(start..at)?;
        self.pos = at;
        Some(BinaryRow {
            bytes,
            offset: start,
        })
    }
}

impl<'a> BinaryRow<'a> {
    /// The row's bytes, as they go to Postgres.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Each field's bytes, `None` for NULL.
    pub fn fields(&self) -> impl Iterator<Item = Option<&'a [u8]>> + use<'a> {
        let bytes = self.bytes;
        let mut at = 2;
        (0..i16::from_be_bytes([bytes[0], bytes[1]])).map(move |_| {
            let len = i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            at += 4;
            let len = usize::try_from(len).ok()?;
            at += len;
            Some(&bytes[at - len..at])
        })
    }
}

/// Appends `text`, the canonical text of a `ty` value, in the type's binary form.
///
/// ```
/// use sluice_transform::{ColumnType, encode_binary};
///
/// let mut out = Vec::new();
/// encode_binary(ColumnType::Numeric, "-12.50", &mut out).unwrap();
/// // 1 digit, weight 0, negative, display scale 2: 12 and 5000 in base 10,000.
/// assert_eq!(out, [0, 2, 0, 0, 0x40, 0, 0, 2, 0, 12, 0x13, 0x88]);
/// ```
pub fn encode_binary(ty: ColumnType, text: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    match ty {
        ColumnType::Text => out.extend_from_slice(text.as_bytes()),
        ColumnType::Bigint => {
            let v: i64 = text.parse().map_err(|_| "not a bigint")?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        ColumnType::Integer => {
            let v: i32 = text.parse().map_err(|_| "not an integer")?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        ColumnType::Double => {
            let v: f64 = text.parse().map_err(|_| "not a number")?;
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        ColumnType::Boolean => out.push(match text {
            "true" => 1,
            "false" => 0,
            _ => return Err("not true or false"),
        }),
        ColumnType::Numeric => numeric(text, out)?,
        ColumnType::Jsonb => {
            out.push(1); // the jsonb binary format's version: JSON text follows
            out.extend_from_slice(text.as_bytes());
        }
        ColumnType::Uuid => {
            let u = uuid::Uuid::parse_str(text).map_err(|_| "not a UUID")?;
            out.extend_from_slice(u.as_bytes());
        }
        ColumnType::Timestamptz => {
            let micros = match utc_micros(text.as_bytes()) {
                Some(us) => us,
                None => pg_micros(text.parse().map_err(|_| "not an RFC 3339 instant")?),
            };
            out.extend_from_slice(&micros.to_be_bytes());
        }
        ColumnType::Timestamp => {
            let dt: DateTime = text.parse().map_err(|_| "not an ISO 8601 date-time")?;
            let t = dt.time();
            let secs = unix_days(dt.date()) * 86_400
                + i64::from(t.hour()) * 3600
                + i64::from(t.minute()) * 60
                + i64::from(t.second());
            out.extend_from_slice(&micros(secs, t.subsec_nanosecond()).to_be_bytes());
        }
        ColumnType::Date => {
            let d: Date = text.parse().map_err(|_| "not an ISO 8601 date")?;
            let days = unix_days(d) - PG_EPOCH_SECONDS / 86_400;
            out.extend_from_slice(&(days as i32).to_be_bytes());
        }
    }
    Ok(())
}

/// Microseconds since Postgres' epoch, the fraction rounded as Postgres' text input rounds it:
/// the decimal fraction read as a double, times a million, to the nearest (ties to even).
fn pg_micros(ts: Timestamp) -> i64 {
    let (mut secs, mut nanos) = (ts.as_second(), ts.subsec_nanosecond());
    if nanos < 0 {
        secs -= 1;
        nanos += 1_000_000_000;
    }
    micros(secs, nanos)
}

/// Microseconds since Postgres' epoch of `secs` since the Unix epoch and `nanos` (0 ≤ nanos <
/// 10⁹) more, rounded as [`pg_micros`] says.
fn micros(secs: i64, nanos: i32) -> i64 {
    let fraction = if nanos % 1000 == 0 {
        i64::from(nanos / 1000)
    } else {
        ((f64::from(nanos) / 1e9) * 1e6).round_ties_even() as i64
    };
    (secs - PG_EPOCH_SECONDS) * 1_000_000 + fraction
}

/// Days from 1970-01-01 to `d`.
fn unix_days(d: Date) -> i64 {
    days_from_civil(
        i64::from(d.year()),
        i64::from(d.month()),
        i64::from(d.day()),
    )
}

/// Microseconds since Postgres' epoch of an instant in the form sluice writes them,
/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (years 0000–9999), rounded as [`pg_micros`] rounds; `None`
/// for any other text (which jiff then reads). Reading this one form by hand is several times
/// faster than a general RFC 3339 parser, and a load writes one per timestamp per row.
fn utc_micros(t: &[u8]) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let digits = t.get(r)?;
        digits.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let punct = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if t.len() < 20 || t.last() != Some(&b'Z') || punct.iter().any(|&(i, c)| t[i] != c) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let nanos = match &t[19..t.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            num(20..20 + frac.len())? * 10i64.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    Some(micros(secs, nanos as i32))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `numeric`'s binary form of a decimal literal (`[+-]digits[.digits][e[+-]digits]`, in
/// `numeric`'s range) or of `NaN`/`Infinity`: base-10,000 digits aligned on the decimal point,
/// the weight of the first, the sign and the display scale (the fraction's digits less the
/// exponent, at least 0).
fn numeric(text: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    const POS: u16 = 0x0000;
    const NEG: u16 = 0x4000;
    let d = match NumericLiteral::parse(text)? {
        NumericLiteral::Finite(d) => d,
        special => {
            let sign: u16 = match special {
                NumericLiteral::NaN => 0xC000,
                NumericLiteral::Infinity => 0xD000,
                _ => 0xF000,
            };
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&sign.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            return Ok(());
        }
    };
    let (int, frac, exp) = (d.int, d.frac, d.exp);
    // In numeric's range, so -16,383 ≤ exp ≤ 131,072: nothing below overflows.
    let dscale = (frac.len() as i64 - exp).max(0);
    // The significant digits, and how many of them stand before the decimal point.
    let digits = int.bytes().chain(frac.bytes()).map(|b| b - b'0');
    let lead = int.len() + frac.len() - digits.clone().skip_while(|&d| d == 0).count();
    let mut sig: Vec<u8> = digits.skip(lead).collect();
    while sig.last() == Some(&0) {
        sig.pop();
    }
    let point = int.len() as i64 - lead as i64 + exp;
    if sig.is_empty() {
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&POS.to_be_bytes());
        out.extend_from_slice(&(dscale as u16).to_be_bytes());
        return Ok(());
    }
    // Zeros in front so that the decimal point falls on a group boundary.
    let pad = point.rem_euclid(4);
    let pad = if pad == 0 { 0 } else { 4 - pad };
    let weight = (point + pad) / 4 - 1;
    let groups = (pad as usize + sig.len()).div_ceil(4);
    if !(-0x8000..=0x7FFF).contains(&weight) || groups > 0xFFFF {
        return Err("out of range for numeric");
    }
    out.extend_from_slice(&(groups as u16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&(if d.negative { NEG } else { POS }).to_be_bytes());
    out.extend_from_slice(&(dscale as u16).to_be_bytes());
    let padded = std::iter::repeat_n(0u8, pad as usize)
        .chain(sig)
        .chain(std::iter::repeat(0));
    let mut padded = padded.take(groups * 4);
    for _ in 0..groups {
        let mut g: u16 = 0;
        for _ in 0..4 {
            g = g * 10 + u16::from(padded.next().unwrap_or(0));
        }
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ty: ColumnType, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_binary(ty, text, &mut out).unwrap();
        out
    }

    /// (ndigits, weight, sign, dscale, digits) of a numeric's binary form.
    fn num(text: &str) -> (u16, i16, u16, u16, Vec<u16>) {
        let b = enc(ColumnType::Numeric, text);
        let w = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let n = w(0);
        let digits = (0..n as usize).map(|i| w(8 + 2 * i)).collect();
        (n, w(2) as i16, w(4), w(6), digits)
    }

    #[test]
    fn numeric_digits_align_on_the_point() {
        assert_eq!(num("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(num("-0.000"), (0, 0, 0, 3, vec![]));
        assert_eq!(num("1"), (1, 0, 0, 0, vec![1]));
        assert_eq!(num("12345.678"), (3, 1, 0, 3, vec![1, 2345, 6780]));
        assert_eq!(num("0.0001"), (1, -1, 0, 4, vec![1]));
        assert_eq!(num("0.00001"), (1, -2, 0, 5, vec![1000]));
        assert_eq!(num("-97.00"), (1, 0, 0x4000, 2, vec![97]));
        assert_eq!(num("10000"), (1, 1, 0, 0, vec![1]));
        assert_eq!(num(".5"), (1, -1, 0, 1, vec![5000]));
        assert_eq!(num("1e4"), (1, 1, 0, 0, vec![1]));
        assert_eq!(num("-1.5E-3"), (1, -1, 0x4000, 4, vec![15]));
        assert_eq!(num("+007.10e1"), (1, 0, 0, 1, vec![71]));
        assert_eq!(num("NaN").2, 0xC000);
        assert_eq!(num("-Infinity").2, 0xF000);
        assert!(encode_binary(ColumnType::Numeric, "1.2.3", &mut Vec::new()).is_err());
        // Out of numeric's range, near i64's ends too: refused, not wrapped around.
        for far in [
            "1e200000",
            "12e9223372036854775806",
            "1e-9223372036854775808",
        ] {
            assert!(
                encode_binary(ColumnType::Numeric, far, &mut Vec::new()).is_err(),
                "{far}"
            );
        }
    }

    #[test]
    fn timestamps_round_to_microseconds_as_postgres_does() {
        let us = |t: &str| i64::from_be_bytes(enc(ColumnType::Timestamptz, t).try_into().unwrap());
        assert_eq!(us("2000-01-01T00:00:00Z"), 0);
        assert_eq!(us("2000-01-01T00:00:00.000001Z"), 1);
        assert_eq!(us("1999-12-31T23:59:59.5Z"), -500_000);
        assert_eq!(us("2000-01-01T00:00:00.0000005Z"), 0, "a tie goes to even");
        assert_eq!(us("2000-01-01T00:00:00.0000015Z"), 2);
        assert_eq!(us("2000-01-01T00:00:00.9999996Z"), 1_000_000);
        let day = |t: &str| i32::from_be_bytes(enc(ColumnType::Date, t).try_into().unwrap());
        assert_eq!(day("2000-01-02"), 1);
        assert_eq!(day("1999-12-31"), -1);
        assert_eq!(
            enc(ColumnType::Timestamp, "2000-01-01T00:00:01"),
            1_000_000i64.to_be_bytes()
        );
    }

    #[test]
    fn the_fast_reading_of_instants_agrees_with_jiff() {
        let jiff = |t: &str| pg_micros(t.parse().unwrap());
        for t in [
            "2023-11-14T22:54:27.173Z",
            "2024-02-29T23:59:59.999999999Z",
            "1969-12-31T23:59:59.1234565Z",
            "0000-03-01T00:00:00Z",
            "0001-01-01T00:00:00.5Z",
            "1900-03-01T12:00:00Z",
            "2000-02-29T00:00:00.000001Z",
            "9999-12-30T00:00:00Z",
        ] {
            assert_eq!(utc_micros(t.as_bytes()), Some(jiff(t)), "{t}");
        }
        // Not the one form: jiff reads them (or refuses them).
        for t in [
            "2023-11-14T22:54:27+00:00",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:54:27.Z",
            "2023-11-14T22:54:27.1234567891Z",
            "2023-11-14 22:54:27Z",
            "-001-01-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
        ] {
            assert_eq!(utc_micros(t.as_bytes()), None, "{t}");
        }
    }

    #[test]
    fn a_row_that_fails_is_not_written() {
        let mut rows = CopyBinary::new(Vec::new(), [ColumnType::Boolean].into());
        rows.write_fields([Some("true")]).unwrap();
        let before = rows.len();
        assert!(rows.write_fields([Some("yes")]).is_err());
        assert_eq!(rows.len(), before);
        assert_eq!(rows.as_bytes(), b"\0\x01\0\0\0\x01\x01");
    }
}
