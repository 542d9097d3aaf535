//! Type inference without a mapping: per column, the narrowest of boolean / bigint / numeric /
//! timestamptz / text that fits every value seen, widening as values arrive.
//!
//! A number is inferred only where Postgres would store its text unchanged: `0123` (a code, a
//! CPF), `+1`, `-0`, `1e3`, `.5` or `5.` make the column text, so that no value is changed on its
//! way in and no two distinct keys (`0123`, `123`) become one.
//!
//! ```
//! use sluice_transform::{ColumnType, Inference};
//!
//! let mut inf = Inference::new(4);
//! inf.observe_row([Some("1"), Some("true"), Some("2024-01-02T03:04:05Z"), Some("01234567890")]);
//! inf.observe_row([Some("2.50"), None, Some("2024-01-02T03:04:05+01:00"), Some("12345678901")]);
//! assert_eq!(
//!     inf.types(),
//!     [ColumnType::Numeric, ColumnType::Boolean, ColumnType::Timestamptz, ColumnType::Text]
//! );
//! ```

use crate::types::ColumnType;

/// What a column looks like so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guess {
    /// Only NULLs seen.
    #[default]
    Unknown,
    Boolean,
    Bigint,
    Numeric,
    Timestamptz,
    Text,
}

impl Guess {
    /// The narrowest guess for one value.
    pub fn of(v: &str) -> Self {
        if v == "true" || v == "false" {
            Self::Boolean
        } else if v.parse::<i64>().is_ok_and(|n| n.to_string() == v) {
            Self::Bigint
        } else if is_canonical_decimal(v) {
            // Non-integers are numeric (exact, keeps trailing zeros), never double.
            Self::Numeric
        } else if v.len() >= 20 && v.as_bytes()[4] == b'-' && v.parse::<jiff::Timestamp>().is_ok() {
            Self::Timestamptz
        } else {
            Self::Text
        }
    }

    /// The narrowest guess that fits both.
    pub fn widen(self, other: Self) -> Self {
        use Guess::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Unknown, x) | (x, Unknown) => x,
            (Bigint, Numeric) | (Numeric, Bigint) => Numeric,
            _ => Text,
        }
    }

    /// The guess a column of type `ty` stands for; `None` for types inference never gives.
    ///
    /// ```
    /// use sluice_transform::{ColumnType, Guess};
    ///
    /// // A bigint column that meets "1.5" widens to numeric, and to text at "n/a".
    /// let g = Guess::of_type(ColumnType::Bigint).unwrap();
    /// assert_eq!(g.widen(Guess::of("1.5")).column_type(), ColumnType::Numeric);
    /// assert_eq!(g.widen(Guess::of("n/a")).column_type(), ColumnType::Text);
    /// assert_eq!(Guess::of_type(ColumnType::Date), None);
    /// ```
    pub fn of_type(ty: ColumnType) -> Option<Self> {
        Some(match ty {
            ColumnType::Boolean => Self::Boolean,
            ColumnType::Bigint => Self::Bigint,
            ColumnType::Numeric => Self::Numeric,
            ColumnType::Timestamptz => Self::Timestamptz,
            ColumnType::Text => Self::Text,
            _ => return None,
        })
    }

    pub fn column_type(self) -> ColumnType {
        match self {
            Self::Boolean => ColumnType::Boolean,
            Self::Bigint => ColumnType::Bigint,
            Self::Numeric => ColumnType::Numeric,
            Self::Timestamptz => ColumnType::Timestamptz,
            Self::Unknown | Self::Text => ColumnType::Text,
        }
    }
}

/// A decimal whose text `numeric` keeps as it is: digits, an optional fraction with digits on
/// both sides of the point, no leading zero (but `0.5`), no sign but a `-` on a non-zero value,
/// no exponent (`numeric` would expand it).
fn is_canonical_decimal(v: &str) -> bool {
    let negative = v.starts_with('-');
    let body = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(digits)
        && !(negative && body.bytes().all(|b| b == b'0' || b == b'.'))
}

/// Running inference over the columns of a stream.
#[derive(Debug, Clone, Default)]
pub struct Inference {
    guesses: Vec<Guess>,
}

impl Inference {
    pub fn new(columns: usize) -> Self {
        Self {
            guesses: vec![Guess::Unknown; columns],
        }
    }

    /// Notes one value of column `i` (`None` is NULL and fits anything); grows for new columns.
    pub fn observe(&mut self, i: usize, value: Option<&str>) {
        if i >= self.guesses.len() {
            self.guesses.resize(i + 1, Guess::Unknown);
        }
        if let Some(v) = value {
            let g = self.guesses[i];
            if g != Guess::Text {
                self.guesses[i] = g.widen(Guess::of(v));
            }
        }
    }

    pub fn observe_row<'a>(&mut self, row: impl IntoIterator<Item = Option<&'a str>>) {
        for (i, v) in row.into_iter().enumerate() {
            self.observe(i, v);
        }
    }

    pub fn guesses(&self) -> &[Guess] {
        &self.guesses
    }

    /// The inferred types (`text` where only NULLs were seen).
    pub fn types(&self) -> Vec<ColumnType> {
        self.guesses.iter().map(|g| g.column_type()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowest_type_that_fits_every_value() {
        let cases: &[(&[&str], ColumnType)] = &[
            (&["true", "false"], ColumnType::Boolean),
            (&["1", "-2", "9223372036854775807"], ColumnType::Bigint),
            (&["1", "18446744073709551616"], ColumnType::Numeric),
            (&["1", "0.1"], ColumnType::Numeric),
            (&["97.00", "-0.5", "0"], ColumnType::Numeric),
            // What Postgres would store as other text stays text.
            (&["0123", "123"], ColumnType::Text),
            (&["01234567890"], ColumnType::Text),
            (&["1e400"], ColumnType::Text),
            (&["1E3"], ColumnType::Text),
            (&["-0"], ColumnType::Text),
            (&["-0.00"], ColumnType::Text),
            (&["007.5"], ColumnType::Text),
            (&[".5"], ColumnType::Text),
            (&["5."], ColumnType::Text),
            (&["+1.5"], ColumnType::Text),
            (&["2023-11-14T22:54:27.173Z"], ColumnType::Timestamptz),
            (&["2023-11-14T22:54:27Z", "1"], ColumnType::Text),
            (&["true", "1"], ColumnType::Text),
            (&["1", ""], ColumnType::Text),
            (&["2023-11-14"], ColumnType::Text),
            (&["+1"], ColumnType::Text),
            (&["HP0000001"], ColumnType::Text),
            (&[], ColumnType::Text),
        ];
        for (values, want) in cases {
            let mut inf = Inference::new(1);
            for v in *values {
                inf.observe(0, Some(v));
            }
            inf.observe(0, None);
            assert_eq!(inf.types()[0], *want, "{values:?}");
        }
    }

    #[test]
    fn widening_is_order_independent() {
        let vals = ["1", "2.5", "x", "true"];
        for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2]] {
            let mut inf = Inference::new(1);
            for i in perm {
                inf.observe(0, Some(vals[i]));
            }
            assert_eq!(inf.types()[0], ColumnType::Text);
        }
        let mut inf = Inference::new(0);
        inf.observe(2, Some("5"));
        assert_eq!(
            inf.types(),
            [ColumnType::Text, ColumnType::Text, ColumnType::Bigint]
        );
    }
}
