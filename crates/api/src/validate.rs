//! Strict validation of posted JSON against a dataset, with every problem reported the way
//! pydantic v2 reports it (FastAPI's 422 `detail`): the same `type` names, `loc` paths, messages
//! and `ctx`, so clients that parse FastAPI's errors parse these.
//!
//! Stricter than pydantic where the contract is: `"true"` is not a boolean, `"3"` not a number,
//! `1.5`, `1.0` and `true` not integers, and a date-time is an RFC 3339 string with an offset (pydantic
//! takes naive date-times, bare dates and Unix numbers).
//!
//! ```
//! use serde_json::json;
//! use sluice_api::{Dataset, validate};
//!
//! let d = Dataset::from_toml("d.toml", "[dataset]\nname = \"d\"\nversion = 1\n[fields.n]\ntype = \"integer\"\nle = 9\n").unwrap();
//! assert!(validate::record(&d, &json!({"n": 3}), &[]).is_ok());
//! let problems = validate::record(&d, &json!({"n": "3", "x": 1}), &["body".into()]).unwrap_err();
//! let seen: Vec<_> = problems.iter().map(|p| (p.ty, p.loc.clone())).collect();
//! assert_eq!(seen, [
//!     ("int_type", vec![json!("body"), json!("n")]),
//!     ("extra_forbidden", vec![json!("body"), json!("x")]),
//! ]);
//! ```

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::dataset::{Bounds, Dataset, Field, Format, Kind, Presence, StringRule};

/// One problem with a request body, as pydantic v2 writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// `["body", "location", "lat"]`, `["body", 3, "age_years"]`
    pub loc: Vec<Value>,
    pub msg: String,
    /// The offending value (left out of responses when inputs may hold PII).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

/// Checks one record; on success, the record with every declared field present (absent
/// optional fields take their default, or null), in the dataset's field order.
pub fn record(dataset: &Dataset, v: &Value, loc: &[Value]) -> Result<Value, Vec<Problem>> {
    let mut out = Vec::new();
    let mut at = Loc {
        prefix: loc,
        steps: Vec::new(),
    };
    let Value::Object(_) = v else {
        return Err(vec![not_a_dict(&at, v)]);
    };
    let checked = object(&dataset.fields, v, &mut at, &mut out);
    if out.is_empty() {
        Ok(checked)
    } else {
        Err(out)
    }
}

/// Where a value sits: the caller's prefix (`["body", 3]`), then the keys and indexes walked to
/// it, borrowed; made into pydantic's `loc` only for a problem.
struct Loc<'a> {
    prefix: &'a [Value],
    steps: Vec<Step<'a>>,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> Loc<'a> {
    fn push(&mut self, step: Step<'a>) {
        self.steps.push(step);
    }

    fn pop(&mut self) {
        self.steps.pop();
    }

    fn values(&self) -> Vec<Value> {
        let steps = self.steps.iter().map(|s| match *s {
            Step::Key(k) => json!(k),
            Step::Index(i) => json!(i),
        });
        self.prefix.iter().cloned().chain(steps).collect()
    }
}

fn problem(
    loc: &Loc<'_>,
    ty: &'static str,
    msg: String,
    input: &Value,
    ctx: Option<Value>,
) -> Problem {
    Problem {
        ty,
        loc: loc.values(),
        msg,
        input: Some(input.clone()),
        ctx,
    }
}

/// The fields of an object (its value already known to be one), then its unknown keys.
fn object<'a>(
    fields: &'a [Field],
    v: &'a Value,
    loc: &mut Loc<'a>,
    out: &mut Vec<Problem>,
) -> Value {
    let given = v.as_object().expect("checked by the caller");
    let mut checked = Map::new();
    for f in fields {
        loc.push(Step::Key(&f.name));
        let value = match (given.get(&f.name), &f.presence) {
            (Some(x), _) => field(f, x, loc, out),
            (None, Presence::Optional { default }) => default.clone().unwrap_or(Value::Null),
            (None, Presence::Required) => {
                out.push(problem(loc, "missing", "Field required".into(), v, None));
                Value::Null
            }
        };
        loc.pop();
        checked.insert(f.name.clone(), value);
    }
    for (k, x) in given {
        if !fields.iter().any(|f| &f.name == k) {
            loc.push(Step::Key(k));
            out.push(problem(
                loc,
                "extra_forbidden",
                "Extra inputs are not permitted".into(),
                x,
                None,
            ));
            loc.pop();
        }
    }
    Value::Object(checked)
}

fn field<'a>(f: &'a Field, v: &'a Value, loc: &mut Loc<'a>, out: &mut Vec<Problem>) -> Value {
    if v.is_null() && f.nullable {
        return Value::Null;
    }
    value(&f.kind, v, loc, out)
}

/// One value of `kind`.
fn value<'a>(kind: &'a Kind, v: &'a Value, loc: &mut Loc<'a>, out: &mut Vec<Problem>) -> Value {
    match kind {
        Kind::String(rule) => string(rule, v, loc, out),
        Kind::Integer(bounds) => integer(*bounds, v, loc, out),
        Kind::Number(bounds) => match v.as_f64().filter(|_| v.is_number()) {
            Some(x) => {
                check_bounds(*bounds, x, v, loc, out);
                v.clone()
            }
            None => {
                out.push(problem(
                    loc,
                    "float_type",
                    "Input should be a valid number".into(),
                    v,
                    None,
                ));
                Value::Null
            }
        },
        Kind::Boolean => {
            if !v.is_boolean() {
                out.push(problem(
                    loc,
                    "bool_type",
                    "Input should be a valid boolean".into(),
                    v,
                    None,
                ));
            }
            v.clone()
        }
        Kind::Enum(values) => {
            if !v.as_str().is_some_and(|s| values.iter().any(|x| x == s)) {
                let expected = one_of(values);
                out.push(problem(
                    loc,
                    "enum",
                    format!("Input should be {expected}"),
                    v,
                    Some(json!({ "expected": expected })),
                ));
            }
            v.clone()
        }
        Kind::Object(fields) => {
            if v.is_object() {
                object(fields, v, loc, out)
            } else {
                out.push(not_a_dict(loc, v));
                Value::Null
            }
        }
        Kind::Array {
            items,
            min_items,
            max_items,
        } => array(items, *min_items, *max_items, v, loc, out),
    }
}

fn string(rule: &StringRule, v: &Value, loc: &Loc<'_>, out: &mut Vec<Problem>) -> Value {
    let Some(s) = v.as_str() else {
        let (ty, msg) = match rule.format {
            Some(Format::DateTime) => ("datetime_type", "Input should be a valid datetime"),
            Some(Format::Date) => ("date_type", "Input should be a valid date"),
            Some(Format::Uuid) => (
                "uuid_type",
                "UUID input should be a string, bytes or UUID object",
            ),
            _ => ("string_type", "Input should be a valid string"),
        };
        out.push(problem(loc, ty, msg.into(), v, None));
        return Value::Null;
    };
    let chars = s.chars().count();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if let Some(min) = rule.min_length.filter(|&m| chars < m) {
        out.push(problem(
            loc,
            "string_too_short",
            format!("String should have at least {min} character{}", plural(min)),
            v,
            Some(json!({ "min_length": min })),
        ));
    } else if let Some(max) = rule.max_length.filter(|&m| chars > m) {
        out.push(problem(
            loc,
            "string_too_long",
            format!("String should have at most {max} character{}", plural(max)),
            v,
            Some(json!({ "max_length": max })),
        ));
    } else if let Some(p) = rule.pattern.as_ref().filter(|p| !p.regex.is_match(s)) {
        out.push(problem(
            loc,
            "string_pattern_mismatch",
            format!("String should match pattern '{}'", p.source),
            v,
            Some(json!({ "pattern": p.source })),
        ));
    } else if let Some(f) = rule.format
        && let Err((ty, why)) = format(f, s)
    {
        out.push(problem(loc, ty, why, v, None));
    }
    v.clone()
}

/// A string format's check: the pydantic error type and message when it fails.
fn format(f: Format, s: &str) -> Result<(), (&'static str, String)> {
    match f {
        Format::DateTime => {
            // RFC 3339: a date, a time, an offset. jiff parses it; a civil (naive) date-time or
            // a bare date parses as one of those instead.
            if s.parse::<jiff::Timestamp>().is_ok() {
                Ok(())
            } else if s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok() {
                Err((
                    "datetime_parsing",
                    "Input should be a valid datetime, a date-time needs a time and an offset"
                        .into(),
                ))
            } else if s.parse::<jiff::civil::DateTime>().is_ok() {
                Err(("timezone_aware", "Input should have timezone info".into()))
            } else {
                Err((
                    "datetime_from_date_parsing",
                    "Input should be a valid datetime or date, expected an RFC 3339 date-time with an offset".into(),
                ))
            }
        }
        Format::Date => {
            let ok = s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok();
            ok.then_some(()).ok_or_else(|| {
                (
                    "date_from_datetime_parsing",
                    "Input should be a valid date or datetime, expected YYYY-MM-DD".into(),
                )
            })
        }
        Format::Uuid => {
            let ok = s.len() == 36 && uuid::Uuid::try_parse(s).is_ok();
            ok.then_some(()).ok_or_else(|| {
                (
                    "uuid_parsing",
                    "Input should be a valid UUID, expected 8-4-4-4-12 hexadecimal digits".into(),
                )
            })
        }
        Format::Email => {
            let ok = s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            }) && !s.chars().any(char::is_whitespace)
                && s.len() <= 254;
            ok.then_some(()).ok_or_else(|| {
                (
                    "value_error",
                    "value is not a valid email address: expected local@domain.tld".into(),
                )
            })
        }
    }
}

fn integer(bounds: Bounds, v: &Value, loc: &Loc<'_>, out: &mut Vec<Problem>) -> Value {
    // Whole numbers written without a point or exponent only: serde_json keeps 1.0 a float
    // (pydantic's StrictInt, which the contract uses, refuses 1.0 too).
    let n = v
        .as_i64()
        .map(|i| i as f64)
        .or_else(|| v.as_u64().map(|u| u as f64));
    let Some(x) = n else {
        out.push(problem(
            loc,
            "int_type",
            "Input should be a valid integer".into(),
            v,
            None,
        ));
        return Value::Null;
    };
    let before = out.len();
    check_bounds(bounds, x, v, loc, out);
    if out.len() == before && v.as_i64().is_none() {
        out.push(problem(
            loc,
            "int_parsing_size",
            "Unable to parse input string as an integer, exceeded maximum size".into(),
            v,
            None,
        ));
    }
    v.clone()
}

fn check_bounds(b: Bounds, x: f64, v: &Value, loc: &Loc<'_>, out: &mut Vec<Problem>) {
    type Check = (
        Option<f64>,
        fn(f64, f64) -> bool,
        &'static str,
        &'static str,
        &'static str,
    );
    let checks: [Check; 4] = [
        (b.gt, |x, b| x > b, "greater_than", "greater than", "gt"),
        (
            b.ge,
            |x, b| x >= b,
            "greater_than_equal",
            "greater than or equal to",
            "ge",
        ),
        (b.lt, |x, b| x < b, "less_than", "less than", "lt"),
        (
            b.le,
            |x, b| x <= b,
            "less_than_equal",
            "less than or equal to",
            "le",
        ),
    ];
    for (bound, holds, ty, words, key) in checks {
        if let Some(bound) = bound
            && !holds(x, bound)
        {
            let shown = crate::dataset::json_number(bound);
            out.push(problem(
                loc,
                ty,
                format!("Input should be {words} {shown}"),
                v,
                Some(json!({ key: shown })),
            ));
            return;
        }
    }
}

fn array<'a>(
    items: &'a Kind,
    min: Option<usize>,
    max: Option<usize>,
    v: &'a Value,
    loc: &mut Loc<'a>,
    out: &mut Vec<Problem>,
) -> Value {
    let Some(xs) = v.as_array() else {
        out.push(problem(
            loc,
            "list_type",
            "Input should be a valid list".into(),
            v,
            None,
        ));
        return Value::Null;
    };
    if let Some(p) = length_problem(xs.len(), min, max, v, &[]) {
        out.push(Problem {
            loc: loc.values(),
            ..p
        });
        return v.clone();
    }
    let mut checked = Vec::with_capacity(xs.len());
    for (i, x) in xs.iter().enumerate() {
        loc.push(Step::Index(i));
        checked.push(value(items, x, loc, out));
        loc.pop();
    }
    Value::Array(checked)
}

/// pydantic's `too_short` / `too_long` for a list of `len` items.
pub fn length_problem(
    len: usize,
    min: Option<usize>,
    max: Option<usize>,
    v: &Value,
    loc: &[Value],
) -> Option<Problem> {
    let loc = &Loc {
        prefix: loc,
        steps: Vec::new(),
    };
    let items = |n: usize| if n == 1 { "item" } else { "items" };
    if let Some(min) = min.filter(|&m| len < m) {
        return Some(problem(
            loc,
            "too_short",
            format!(
                "List should have at least {min} {} after validation, not {len}",
                items(min)
            ),
            v,
            Some(json!({"field_type": "List", "min_length": min, "actual_length": len})),
        ));
    }
    let max = max.filter(|&m| len > m)?;
    Some(problem(
        loc,
        "too_long",
        format!(
            "List should have at most {max} {} after validation, not {len}",
            items(max)
        ),
        v,
        Some(json!({"field_type": "List", "max_length": max, "actual_length": len})),
    ))
}

/// What pydantic says of a model given something other than an object.
fn not_a_dict(loc: &Loc<'_>, v: &Value) -> Problem {
    problem(
        loc,
        "model_attributes_type",
        "Input should be a valid dictionary or object to extract fields from".into(),
        v,
        None,
    )
}

/// `'a', 'b' or 'c'`
fn one_of(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> Dataset {
        Dataset::from_toml(
            "d.toml",
            "[dataset]\nname = \"d\"\nversion = 1\n[fields.n]\ntype = \"integer\"\nle = 10000\n",
        )
        .unwrap()
    }

    fn types(v: Value) -> Vec<&'static str> {
        match record(&dataset(), &json!({ "n": v }), &[]) {
            Ok(_) => vec![],
            Err(ps) => ps.iter().map(|p| p.ty).collect(),
        }
    }

    #[test]
    fn formats_refuse_what_pydantic_refuses() {
        let d = Dataset::from_toml(
            "f.toml",
            "[dataset]\nname = \"f\"\nversion = 1\n\
             [fields.day]\ntype = \"string\"\nformat = \"date\"\noptional = true\n\
             [fields.id]\ntype = \"string\"\nformat = \"uuid\"\noptional = true\n\
             [fields.mail]\ntype = \"string\"\nformat = \"email\"\noptional = true\n\
             [fields.at]\ntype = \"string\"\nformat = \"date-time\"\noptional = true\n\
             [fields.n]\ntype = \"integer\"\noptional = true\n",
        )
        .unwrap();
        let types = |v: Value| -> Vec<&'static str> {
            match record(&d, &v, &[]) {
                Ok(_) => vec![],
                Err(ps) => ps.iter().map(|p| p.ty).collect(),
            }
        };
        let good = json!({"day": "2024-02-29", "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
                          "mail": "a@b.co", "at": "2024-02-29T10:00:00+01:00", "n": 1});
        assert_eq!(types(good), Vec::<&str>::new());
        assert_eq!(
            types(json!({"day": "2023-02-29"})),
            ["date_from_datetime_parsing"]
        );
        assert_eq!(types(json!({"day": 20240229})), ["date_type"]);
        assert_eq!(
            types(json!({"id": "67e55044-10b1-426f-9247"})),
            ["uuid_parsing"]
        );
        assert_eq!(types(json!({"id": 7})), ["uuid_type"]);
        assert_eq!(types(json!({"mail": "a b@c.d"})), ["value_error"]);
        assert_eq!(types(json!({"mail": "a@b"})), ["value_error"]);
        assert_eq!(types(json!({"at": true})), ["datetime_type"]);
        assert_eq!(
            types(json!({"n": 18446744073709551615u64})),
            ["int_parsing_size"]
        );
    }

    #[test]
    fn an_integer_is_written_without_a_point_as_strict_int_has_it() {
        let ok = record(&dataset(), &json!({"n": 299}), &[]).unwrap();
        assert_eq!(ok["n"], json!(299));
        assert_eq!(types(json!(299.0)), ["int_type"]);
        assert_eq!(types(json!(3e2)), ["int_type"]);
        assert_eq!(types(json!(1.5)), ["int_type"]);
        assert_eq!(types(json!(true)), ["int_type"]);
        assert_eq!(types(json!("3")), ["int_type"]);
        assert_eq!(types(json!(20000)), ["less_than_equal"]);
    }
}
