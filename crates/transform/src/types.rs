//! Column types and the strict conversion of CSV text into the canonical text Postgres accepts.
//!
//! ```
//! use sluice_transform::{ColumnType, Conversion, TimeFormat};
//!
//! let conv = Conversion { ty: ColumnType::Timestamptz, format: Some(TimeFormat::EpochMillis), tz: None };
//! assert_eq!(conv.convert("1700002467173").unwrap(), "2023-11-14T22:54:27.173Z");
//! assert!(Conversion::plain(ColumnType::Bigint).convert("12.5").is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// Target column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Bigint,
    Integer,
    Numeric,
    Double,
    Boolean,
    Date,
    Timestamptz,
    Timestamp,
    Jsonb,
    Uuid,
}

impl ColumnType {
    /// The type as written in SQL.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Bigint => "bigint",
            Self::Integer => "integer",
            Self::Numeric => "numeric",
            Self::Double => "double precision",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Timestamptz => "timestamptz",
            Self::Timestamp => "timestamp",
            Self::Jsonb => "jsonb",
            Self::Uuid => "uuid",
        }
    }

    /// Whether a column type as `format_type` prints it is exactly this type (no length,
    /// precision or other type).
    ///
    /// ```
    /// use sluice_transform::ColumnType;
    ///
    /// assert!(ColumnType::Timestamptz.is_pg("timestamp with time zone"));
    /// assert!(!ColumnType::Timestamptz.is_pg("timestamp(3) with time zone"));
    /// assert!(!ColumnType::Numeric.is_pg("numeric(12,2)"));
    /// ```
    pub fn is_pg(self, format_type: &str) -> bool {
        let long = match self {
            Self::Timestamptz => "timestamp with time zone",
            Self::Timestamp => "timestamp without time zone",
            other => other.sql(),
        };
        format_type == self.sql() || format_type == long
    }

    /// The type that validates values for a Postgres column type as `format_type` prints it
    /// (`character varying(20)`, `numeric(12,2)`, `timestamp(3) with time zone`, …); `None`
    /// for types sluice does not validate itself (Postgres casts and checks those).
    pub fn from_pg(name: &str) -> Option<Self> {
        let base = name.split('(').next().unwrap_or(name).trim();
        let with_tz = name.ends_with("with time zone");
        Some(match base {
            "text" | "character varying" | "character" | "varchar" | "name" | "citext" => {
                Self::Text
            }
            "bigint" => Self::Bigint,
            "integer" | "smallint" => Self::Integer,
            "numeric" => Self::Numeric,
            "double precision" | "real" => Self::Double,
            "boolean" => Self::Boolean,
            "date" => Self::Date,
            "timestamp" if with_tz => Self::Timestamptz,
            "timestamp" | "timestamp without time zone" => Self::Timestamp,
            "timestamp with time zone" => Self::Timestamptz,
            "jsonb" | "json" => Self::Jsonb,
            "uuid" => Self::Uuid,
            _ => return None,
        })
    }

    /// True for the types a timestamp format applies to.
    pub fn is_temporal(self) -> bool {
        matches!(self, Self::Date | Self::Timestamptz | Self::Timestamp)
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

impl FromStr for ColumnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).map_err(|_| {
            format!(
                "unknown type {s:?} (expected text, bigint, integer, numeric, double, boolean, date, \
                 timestamptz, timestamp, jsonb or uuid)"
            )
        })
    }
}

/// How a timestamp is written in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    EpochSeconds,
    EpochMillis,
    Rfc3339,
    /// A strftime pattern (`%d/%m/%Y %H:%M`); without `%z`/`%Z` the value is read in the time zone.
    Strftime(String),
}

impl FromStr for TimeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "epoch_seconds" | "epoch_s" => Self::EpochSeconds,
            "epoch_millis" | "epoch_ms" => Self::EpochMillis,
            "rfc3339" => Self::Rfc3339,
            p if p.contains('%') => Self::Strftime(p.to_owned()),
            other => {
                return Err(format!(
                    "unknown timestamp format {other:?} (expected epoch_seconds, epoch_millis, rfc3339 \
                     or a strftime pattern such as \"%d/%m/%Y %H:%M\")"
                ));
            }
        })
    }
}

/// A type plus how to read it.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub ty: ColumnType,
    pub format: Option<TimeFormat>,
    /// Zone for civil times without an offset (default UTC).
    pub tz: Option<TimeZone>,
}

impl Conversion {
    pub fn plain(ty: ColumnType) -> Self {
        Self {
            ty,
            format: None,
            tz: None,
        }
    }

    /// Whether an instant's own text (RFC 3339, UTC) is what this conversion writes for it: a
    /// `timestamptz` read as RFC 3339.
    pub fn keeps_instants(&self) -> bool {
        self.ty == ColumnType::Timestamptz
            && matches!(self.format, None | Some(TimeFormat::Rfc3339))
    }

    /// Converts `value` to the canonical text of the type, or says why it cannot.
    ///
    /// ```
    /// use sluice_transform::{ColumnType, Conversion};
    ///
    /// assert_eq!(Conversion::plain(ColumnType::Bigint).convert("+007"), Ok("7".into()));
    /// assert!(Conversion::plain(ColumnType::Boolean).convert("maybe").is_err());
    /// ```
    pub fn convert(&self, value: &str) -> Result<String, String> {
        let mut out = String::new();
        self.convert_into(value, &mut out)?;
        Ok(out)
    }

    /// [`Conversion::convert`], appending to `out` (a row's buffer, reused row after row);
    /// nothing is appended when it fails.
    pub fn convert_into(&self, value: &str, out: &mut String) -> Result<(), String> {
        if value.contains('\0') {
            return Err("contains a NUL character, which Postgres cannot store".into());
        }
        match self.ty {
            ColumnType::Text => out.push_str(value),
            ColumnType::Bigint => {
                let v = value.parse::<i64>().map_err(|_| {
                    "not a bigint (a whole number within ±9223372036854775807)".to_owned()
                })?;
                push_display(out, v);
            }
            ColumnType::Integer => {
                let v = value
                    .parse::<i32>()
                    .map_err(|_| "not an integer (a whole number within ±2147483647)".to_owned())?;
                push_display(out, v);
            }
            ColumnType::Numeric => {
                NumericLiteral::parse(value)?;
                out.push_str(value);
            }
            ColumnType::Double => match value.parse::<f64>() {
                // Postgres refuses what overflows, and what underflows to zero too.
                Ok(v)
                    if v.is_finite()
                        && Decimal::parse(value).is_some_and(|d| v != 0.0 || d.is_zero()) =>
                {
                    out.push_str(value)
                }
                Ok(_) if is_decimal(value) => {
                    return Err("out of range for double precision".into());
                }
                _ => return Err("not a number".into()),
            },
            ColumnType::Boolean => {
                let b = parse_bool(value).ok_or_else(|| {
                    "not a boolean (true/false, t/f, 1/0, yes/no, on/off)".to_owned()
                })?;
                out.push_str(if b { "true" } else { "false" });
            }
            ColumnType::Jsonb => {
                if value.contains("\\u0000") {
                    return Err("JSON contains \\u0000, which jsonb cannot store".into());
                }
                serde_json::from_str::<serde::de::IgnoredAny>(value)
                    .map_err(|e| format!("not valid JSON: {e}"))?;
                out.push_str(value);
            }
            ColumnType::Uuid => {
                let u = uuid::Uuid::parse_str(value).map_err(|_| "not a UUID".to_owned())?;
                push_display(out, u.hyphenated());
            }
            ColumnType::Timestamptz => push_display(out, self.timestamp(value)?),
            ColumnType::Timestamp => push_display(out, self.civil(value)?),
            ColumnType::Date => push_display(out, self.civil(value)?.date()),
        }
        Ok(())
    }

    fn zone(&self) -> TimeZone {
        self.tz.clone().unwrap_or(TimeZone::UTC)
    }

    /// An instant: from epoch numbers, RFC 3339, or a civil time read in the zone.
    fn timestamp(&self, value: &str) -> Result<Timestamp, String> {
        match &self.format {
            Some(TimeFormat::EpochSeconds) => epoch(value, 1),
            Some(TimeFormat::EpochMillis) => epoch(value, 1000),
            Some(TimeFormat::Rfc3339) | None => value
                .parse::<Timestamp>()
                .map_err(|e| format!("not an RFC 3339 timestamp with offset: {e}")),
            Some(TimeFormat::Strftime(p)) => {
                let tm = jiff::fmt::strtime::parse(p, value)
                    .map_err(|e| format!("does not match format {p:?}: {e}"))?;
                if tm.offset().is_some() {
                    return tm.to_timestamp().map_err(|e| e.to_string());
                }
                civil_of(&tm, p)?
                    .to_zoned(self.zone())
                    .map(|z| z.timestamp())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// A civil date-time: instants are shown in the zone; plain ISO dates and times are taken as is.
    fn civil(&self, value: &str) -> Result<DateTime, String> {
        match &self.format {
            Some(TimeFormat::Strftime(p)) => {
                let tm = jiff::fmt::strtime::parse(p, value)
                    .map_err(|e| format!("does not match format {p:?}: {e}"))?;
                if tm.offset().is_some() {
                    let ts = tm.to_timestamp().map_err(|e| e.to_string())?;
                    return Ok(ts.to_zoned(self.zone()).datetime());
                }
                civil_of(&tm, p)
            }
            Some(_) => Ok(self.timestamp(value)?.to_zoned(self.zone()).datetime()),
            None => {
                if let Ok(dt) = value.parse::<DateTime>() {
                    return Ok(dt);
                }
                if let Ok(d) = value.parse::<Date>() {
                    return Ok(d.to_datetime(jiff::civil::Time::midnight()));
                }
                let ts = value
                    .parse::<Timestamp>()
                    .map_err(|_| "not an ISO 8601 date or date-time".to_owned())?;
                Ok(ts.to_zoned(self.zone()).datetime())
            }
        }
    }
}

/// The civil date-time a strftime parse produced (a date alone is taken at midnight).
fn civil_of(tm: &jiff::fmt::strtime::BrokenDownTime, pattern: &str) -> Result<DateTime, String> {
    tm.to_datetime()
        .or_else(|_| {
            tm.to_date()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|e| format!("does not match format {pattern:?}: {e}"))
}

/// `v`'s text appended to `out` (writing to a `String` cannot fail).
pub(crate) fn push_display(out: &mut String, v: impl fmt::Display) {
    use fmt::Write;
    let _ = write!(out, "{v}");
}

/// Epoch seconds (`scale` 1) or milliseconds (`scale` 1000), with an optional decimal fraction.
fn epoch(value: &str, scale: i64) -> Result<Timestamp, String> {
    let bad = || {
        format!(
            "not an epoch {}",
            if scale == 1 {
                "seconds"
            } else {
                "milliseconds"
            }
        )
    };
    let (neg, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = int.parse().map_err(|_| bad())?;
    // Nanoseconds of the fraction, in units of `scale`.
    let unit_nanos: i64 = 1_000_000_000 / scale;
    let mut frac_nanos: i64 = 0;
    let mut place = unit_nanos;
    for b in frac.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        frac_nanos += i64::from(b - b'0') * place;
    }
    let total = i128::from(whole) * i128::from(unit_nanos) + i128::from(frac_nanos);
    let total = if neg { -total } else { total };
    Timestamp::from_nanosecond(total).map_err(|_| format!("{} is out of range", bad()))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// `[+-]digits[.digits][e[+-]digits]`, the JSON-and-SQL decimal syntax.
pub fn is_decimal(v: &str) -> bool {
    Decimal::parse(v).is_some()
}

/// A decimal literal's parts: `[+-]int[.frac][e[+-]exp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decimal<'a> {
    pub negative: bool,
    /// The digits before the point, and after it (one of them may be empty).
    pub int: &'a str,
    pub frac: &'a str,
    /// The exponent; `i64::MAX` when it does not fit.
    pub exp: i64,
}

impl<'a> Decimal<'a> {
    pub fn parse(v: &'a str) -> Option<Self> {
        let negative = v.starts_with('-');
        let v = v.strip_prefix(['-', '+']).unwrap_or(v);
        let (mantissa, exp) = match v.find(['e', 'E']) {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let exp = match exp {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                e.parse::<i64>().unwrap_or(i64::MAX)
            }
        };
        Some(Self {
            negative,
            int,
            frac,
            exp,
        })
    }

    /// Whether every digit is 0.
    pub fn is_zero(&self) -> bool {
        self.int.bytes().chain(self.frac.bytes()).all(|b| b == b'0')
    }
}

/// A `numeric` value as Postgres reads it: a special value or a decimal in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumericLiteral<'a> {
    NaN,
    Infinity,
    NegInfinity,
    Finite(Decimal<'a>),
}

impl<'a> NumericLiteral<'a> {
    /// Postgres `numeric` holds up to 131072 digits before the point and 16383 after.
    pub fn parse(v: &'a str) -> Result<Self, &'static str> {
        let is = |w: &str| v.eq_ignore_ascii_case(w);
        if is("nan") {
            return Ok(Self::NaN);
        }
        if is("infinity") || is("+infinity") {
            return Ok(Self::Infinity);
        }
        if is("-infinity") {
            return Ok(Self::NegInfinity);
        }
        let d = Decimal::parse(v).ok_or("not a number")?;
        let int = d.int.trim_start_matches('0').len() as i64;
        let weight = int.saturating_add(d.exp);
        let scale = (d.frac.len() as i64).saturating_sub(d.exp);
        if weight > 131_072 || scale > 16_383 {
            return Err("out of range for numeric");
        }
        Ok(Self::Finite(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(ty: ColumnType, format: Option<&str>, tz: Option<&str>) -> Conversion {
        Conversion {
            ty,
            format: format.map(|f| f.parse().unwrap()),
            tz: tz.map(|z| TimeZone::get(z).unwrap()),
        }
    }

    #[test]
    fn postgres_type_names_map_to_validating_types() {
        use ColumnType as T;
        for (pg, ty) in [
            ("character varying(20)", Some(T::Text)),
            ("numeric(12,2)", Some(T::Numeric)),
            ("timestamp(3) with time zone", Some(T::Timestamptz)),
            ("timestamp with time zone", Some(T::Timestamptz)),
            ("timestamp without time zone", Some(T::Timestamp)),
            ("smallint", Some(T::Integer)),
            ("double precision", Some(T::Double)),
            ("json", Some(T::Jsonb)),
            ("inet", None),
            ("integer[]", None),
        ] {
            assert_eq!(ColumnType::from_pg(pg), ty, "{pg}");
        }
    }

    #[test]
    fn integers_are_strict() {
        let b = Conversion::plain(ColumnType::Bigint);
        assert_eq!(b.convert("-42").unwrap(), "-42");
        assert!(b.convert("18446744073709551616").is_err());
        assert!(b.convert("1.0").is_err());
        assert!(b.convert(" 1").is_err());
        let i = Conversion::plain(ColumnType::Integer);
        assert!(i.convert("2147483648").is_err());
        assert_eq!(i.convert("2147483647").unwrap(), "2147483647");
    }

    #[test]
    fn numeric_keeps_exact_text_and_checks_range() {
        let n = Conversion::plain(ColumnType::Numeric);
        for ok in [
            "0.1",
            "1e400",
            "18446744073709551616",
            "97.00",
            "-1.5E-3",
            ".5",
            "NaN",
        ] {
            assert_eq!(n.convert(ok).unwrap(), ok);
        }
        // An exponent near i64's ends is out of range, not an overflow.
        for bad in [
            "abc",
            "1e",
            "--1",
            "1e200000",
            "1.2.3",
            "",
            "11e9223372036854775807",
        ] {
            assert!(n.convert(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn double_rejects_overflow() {
        let d = Conversion::plain(ColumnType::Double);
        assert_eq!(d.convert("0.1").unwrap(), "0.1");
        assert!(d.convert("1e400").unwrap_err().contains("out of range"));
        assert!(d.convert("1e-400").unwrap_err().contains("out of range"));
        assert_eq!(d.convert("-0.0e-400").unwrap(), "-0.0e-400");
        assert_eq!(d.convert("5e-324").unwrap(), "5e-324");
        assert!(d.convert("inf").is_err());
    }

    #[test]
    fn booleans_normalise() {
        let b = Conversion::plain(ColumnType::Boolean);
        assert_eq!(b.convert("T").unwrap(), "true");
        assert_eq!(b.convert("off").unwrap(), "false");
        assert!(b.convert("maybe").is_err());
    }

    #[test]
    fn timestamps_in_every_format() {
        let ms = conv(ColumnType::Timestamptz, Some("epoch_millis"), None);
        assert_eq!(
            ms.convert("1700002467173").unwrap(),
            "2023-11-14T22:54:27.173Z"
        );
        assert!(ms.convert("17000024671.73").is_ok());
        assert!(ms.convert("x").is_err());
        let s = conv(ColumnType::Timestamptz, Some("epoch_seconds"), None);
        assert_eq!(s.convert("1700000000.5").unwrap(), "2023-11-14T22:13:20.5Z");
        assert_eq!(s.convert("-1").unwrap(), "1969-12-31T23:59:59Z");
        let r = conv(ColumnType::Timestamptz, Some("rfc3339"), None);
        assert_eq!(
            r.convert("2024-01-02T03:04:05-03:00").unwrap(),
            "2024-01-02T06:04:05Z"
        );
        assert!(
            r.convert("2024-01-02 03:04:05").is_err(),
            "no offset, not RFC 3339"
        );
        let p = conv(
            ColumnType::Timestamptz,
            Some("%d/%m/%Y %H:%M"),
            Some("America/Sao_Paulo"),
        );
        assert_eq!(
            p.convert("02/01/2024 03:04").unwrap(),
            "2024-01-02T06:04:00Z"
        );
        let local = conv(
            ColumnType::Timestamp,
            Some("epoch_millis"),
            Some("America/Sao_Paulo"),
        );
        assert_eq!(
            local.convert("1700002467173").unwrap(),
            "2023-11-14T19:54:27.173"
        );
        let d = conv(ColumnType::Date, None, None);
        assert_eq!(d.convert("2024-02-29").unwrap(), "2024-02-29");
        assert!(d.convert("2023-02-29").is_err());
        let dp = conv(ColumnType::Date, Some("%d/%m/%Y"), None);
        assert_eq!(dp.convert("31/12/2023").unwrap(), "2023-12-31");
    }

    #[test]
    fn json_uuid_and_nul() {
        let j = Conversion::plain(ColumnType::Jsonb);
        assert!(j.convert(r#"[{"a":1}]"#).is_ok());
        assert!(j.convert("[1,").is_err());
        assert!(j.convert(r#"["\u0000"]"#).is_err());
        let u = Conversion::plain(ColumnType::Uuid);
        assert_eq!(
            u.convert("67E55044-10B1-426F-9247-BB680E5FE0C8").unwrap(),
            "67e55044-10b1-426f-9247-bb680e5fe0c8"
        );
        assert!(u.convert("nope").is_err());
        let t = Conversion::plain(ColumnType::Text);
        assert!(t.convert("a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn type_names_parse() {
        assert_eq!(
            "TIMESTAMPTZ".parse::<ColumnType>().unwrap(),
            ColumnType::Timestamptz
        );
        assert!("varchar".parse::<ColumnType>().is_err());
        assert_eq!(ColumnType::Double.sql(), "double precision");
    }
}
