//! What an existing column holds beyond its base type: a length (`varchar(n)`, `char(n)`), a
//! range (`smallint`, `real`), a precision and scale (`numeric(p,s)`), `NOT NULL`. Checked per
//! row, so one value that does not fit is that row's rejection, not an aborted `COPY`.
//!
//! ```
//! use sluice_transform::ColumnLimit;
//!
//! let price = ColumnLimit::from_pg("numeric(5,2)", true).unwrap();
//! assert!(price.check(Some("999.994")).is_ok()); // rounds to 999.99, as Postgres does
//! assert!(price.check(Some("999.995")).is_err()); // rounds to 1000.00: 4 digits before the point
//! assert!(price.check(None).unwrap_err().contains("NOT NULL"));
//! let code = ColumnLimit::from_pg("character varying(3)", false).unwrap();
//! assert!(code.check(Some("ação")).is_err() && code.check(Some("açã  ")).is_ok());
//! ```

/// The limits of one column; `None` from [`ColumnLimit::from_pg`] when it has none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnLimit {
    /// `varchar(n)`, `char(n)`: characters (trailing spaces beyond are cut, as Postgres does).
    pub max_chars: Option<usize>,
    /// `smallint`.
    pub int16: bool,
    /// `real`: a finite, non-underflowing 32-bit float.
    pub float4: bool,
    /// `numeric(p,s)`: (precision, scale).
    pub numeric: Option<(u32, i32)>,
    pub not_null: bool,
    /// The type as the catalog prints it, for the messages.
    pub pg_type: String,
}

impl ColumnLimit {
    /// The limits of a column of this type (`format_type`'s text) and nullability.
    pub fn from_pg(pg_type: &str, not_null: bool) -> Option<Self> {
        let base = pg_type.split('(').next().unwrap_or(pg_type).trim();
        let args: Vec<i64> = pg_type
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(a, _)| a.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_default();
        let mut limit = Self {
            not_null,
            pg_type: pg_type.to_owned(),
            ..Self::default()
        };
        match (base, args.as_slice()) {
            ("character varying" | "character" | "varchar" | "bpchar", [n]) => {
                limit.max_chars = usize::try_from(*n).ok();
            }
            ("smallint", _) => limit.int16 = true,
            ("real", _) => limit.float4 = true,
            ("numeric", [p]) => limit.numeric = Some((*p as u32, 0)),
            ("numeric", [p, s]) => limit.numeric = Some((*p as u32, *s as i32)),
            _ => {}
        }
        let any = limit.max_chars.is_some()
            || limit.int16
            || limit.float4
            || limit.numeric.is_some()
            || not_null;
        any.then_some(limit)
    }

    /// Whether the value (already in the column's canonical text) can be stored.
    pub fn check(&self, value: Option<&str>) -> Result<(), String> {
        let Some(v) = value else {
            return if self.not_null {
                Err("NULL in a NOT NULL column".into())
            } else {
                Ok(())
            };
        };
        let ty = &self.pg_type;
        if let Some(n) = self.max_chars {
            let chars = v.chars().count();
            if chars > n && !v.chars().skip(n).all(|c| c == ' ') {
                return Err(format!("{chars} characters, more than {ty} holds"));
            }
        }
        if self.int16 && v.parse::<i16>().is_err() {
            return Err("out of range for smallint".into());
        }
        if self.float4 && !fits_float4(v) {
            return Err("out of range for real".into());
        }
        if let Some((p, s)) = self.numeric
            && !fits_numeric(v, p, s)
        {
            return Err(format!(
                "more than {} digits before the point (rounded to {s} after it), more than {ty} holds",
                p as i64 - s as i64
            ));
        }
        Ok(())
    }
}

fn fits_float4(v: &str) -> bool {
    match v.parse::<f64>() {
        Ok(f) => {
            let narrow = f as f32;
            let overflow = narrow.is_infinite() && f.is_finite();
            let underflow = narrow == 0.0 && f != 0.0;
            !overflow && !underflow
        }
        Err(_) => true, // not a number at all: the base type's check says so
    }
}

/// Whether a decimal literal, rounded half away from zero to `scale` digits after the point,
/// has at most `precision - scale` digits before it (`NaN` fits; infinities do not).
fn fits_numeric(v: &str, precision: u32, scale: i32) -> bool {
    let lower = v.to_ascii_lowercase();
    if lower == "nan" {
        return true;
    }
    if lower.trim_start_matches(['+', '-']) == "infinity" {
        return false;
    }
    let unsigned = v.trim_start_matches(['+', '-']);
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(i) => (
            &unsigned[..i],
            unsigned[i + 1..].parse::<i64>().unwrap_or(0),
        ),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    // Digits before the point.
    let mut point = int.len() as i64 + exp;
    let keep = point + scale as i64;
    if keep < 0 {
        return true; // rounds to zero
    }
    if (keep as usize) < digits.len() {
        let round_up = digits[keep as usize] >= 5;
        digits.truncate(keep as usize);
        if round_up {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    point += 1;
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
    }
    // Leading zeros are not digits before the point.
    let leading = digits.iter().take_while(|d| **d == 0).count() as i64;
    let int_digits = (point - leading).max(0);
    if digits.iter().all(|d| *d == 0) {
        return true;
    }
    int_digits <= precision as i64 - scale as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_rounds_then_counts_digits_before_the_point() {
        for (v, p, s, ok) in [
            ("123.45", 5, 2, true),
            ("1234.5", 5, 2, false),
            ("999.995", 5, 2, false),
            ("-999.994", 5, 2, true),
            ("0.000001", 5, 2, true),
            ("00012.3", 5, 2, true),
            ("1e2", 3, 0, true),
            ("1e3", 3, 0, false),
            ("12345e-3", 3, 1, true),
            ("99.96", 3, 1, false),
            ("NaN", 3, 1, true),
            ("Infinity", 3, 1, false),
            ("12345", 3, -2, true),
            ("123456", 3, -2, false),
        ] {
            assert_eq!(fits_numeric(v, p, s), ok, "{v} in numeric({p},{s})");
        }
    }

    #[test]
    fn limits_from_the_catalog() {
        assert_eq!(ColumnLimit::from_pg("text", false), None);
        assert_eq!(ColumnLimit::from_pg("numeric", false), None);
        assert!(ColumnLimit::from_pg("text", true).is_some());
        let small = ColumnLimit::from_pg("smallint", false).unwrap();
        assert!(small.check(Some("32767")).is_ok() && small.check(Some("32768")).is_err());
        let real = ColumnLimit::from_pg("real", false).unwrap();
        assert!(real.check(Some("3.4e38")).is_ok());
        assert!(real.check(Some("3.5e38")).is_err() && real.check(Some("1e-50")).is_err());
        let ch = ColumnLimit::from_pg("character(2)", false).unwrap();
        assert!(ch.check(Some("ab")).is_ok() && ch.check(Some("abc")).is_err());
    }
}
