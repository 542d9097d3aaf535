//! Type inference without a mapping: per column, the narrowest of boolean / bigint / numeric /
//! timestamptz / text that fits every value seen, widening as values arrive.
//!
//! ```
//! use sluice_transform::{ColumnType, Inference};
//!
//! let mut inf = Inference::new(3);
//! inf.observe_row([Some("1"), Some("true"), Some("2024-01-02T03:04:05Z")]);
//! inf.observe_row([Some("1e400"), None, Some("2024-01-02T03:04:05+01:00")]);
//! assert_eq!(inf.types(), [ColumnType::Numeric, ColumnType::Boolean, ColumnType::Timestamptz]);
//! ```

use crate::types::{ColumnType, is_decimal};

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
        } else if v.parse::<i64>().is_ok() && !v.starts_with('+') {
            Self::Bigint
        } else if is_decimal(v) && !v.starts_with('+') {
            // Non-integers are numeric (exact), never double: 1e400 overflows a double.
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
            (&["1e400"], ColumnType::Numeric),
            (&["97.00"], ColumnType::Numeric),
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
