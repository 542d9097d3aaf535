//! Property tests: flatten never panics, and every leaf appears exactly once with its exact text.

use proptest::prelude::*;
use serde_json::{Map, Value};
use sluice_flatten::{ArrayPolicy, Flattener, InputFormat, Options, RecordReader};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((".{0,8}", json_value()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

/// The leaves a flattener must produce for `v`, as exact text (`None` for null).
fn leaves(v: &Value, index_arrays: bool, out: &mut Vec<Option<String>>) {
    match v {
        Value::Object(m) if m.is_empty() => out.push(Some("{}".into())),
        Value::Object(m) => m.values().for_each(|c| leaves(c, index_arrays, out)),
        Value::Array(a) if a.is_empty() => out.push(Some("[]".into())),
        Value::Array(a) if index_arrays => a.iter().for_each(|c| leaves(c, index_arrays, out)),
        Value::Array(_) => out.push(Some(serde_json::to_string(v).unwrap())),
        Value::String(s) => out.push(Some(s.clone())),
        Value::Number(n) => out.push(Some(n.to_string())),
        Value::Bool(b) => out.push(Some(b.to_string())),
        Value::Null => out.push(None),
    }
}

fn check(v: &Value, input: &str, arrays: ArrayPolicy) -> Result<(), TestCaseError> {
    let mut f = Flattener::new(Options {
        arrays,
        ..Options::default()
    });
    let row = f
        .flatten(input.as_bytes())
        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let mut got: Vec<Option<String>> = row.iter().map(|s| s.map(str::to_owned)).collect();
    let mut want = Vec::new();
    match v {
        Value::Object(m) => m
            .values()
            .for_each(|c| leaves(c, arrays == ArrayPolicy::Index, &mut want)),
        _ => unreachable!(),
    }
    prop_assert_eq!(f.schema().len(), want.len(), "one column per leaf");
    got.sort();
    want.sort();
    prop_assert_eq!(got, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_leaf_exactly_once_indexed(v in json_object()) {
        check(&v, &serde_json::to_string(&v).unwrap(), ArrayPolicy::Index)?;
    }

    #[test]
    fn every_leaf_exactly_once_arrays_as_json_even_from_pretty_input(v in json_object()) {
        check(&v, &serde_json::to_string_pretty(&v).unwrap(), ArrayPolicy::Json)?;
    }

    #[test]
    fn names_are_always_valid_and_unique(v in json_object()) {
        let mut f = Flattener::new(Options { arrays: ArrayPolicy::Index, ..Options::default() });
        f.flatten(serde_json::to_string(&v).unwrap().as_bytes()).unwrap();
        let names: Vec<_> = f.schema().names().collect();
        let unique: std::collections::HashSet<_> = names.iter().collect();
        prop_assert_eq!(unique.len(), names.len());
        for n in names {
            prop_assert!(!n.is_empty() && n.len() <= 63 && !n.as_bytes()[0].is_ascii_digit(), "{}", n);
            prop_assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", n);
            prop_assert!(!["xmin", "xmax", "cmin", "cmax", "ctid", "tableoid"].contains(&n));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Flattener::new(Options::default()).flatten(&bytes);
        for format in [InputFormat::Auto, InputFormat::Array, InputFormat::path("items")] {
            let mut r = RecordReader::new(&bytes[..], format);
            let mut f = Flattener::new(Options { arrays: ArrayPolicy::Index, ..Options::default() });
            while let Ok(Some(rec)) = r.next_record() {
                let _ = f.flatten(rec.bytes);
            }
        }
    }

    #[test]
    fn never_panics_on_mangled_json(v in json_object(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        let i = cut.index(bytes.len());
        bytes[i] = flip;
        let _ = Flattener::new(Options::default()).flatten(&bytes);
        let _ = Flattener::new(Options::default()).flatten(&bytes[..i]);
    }
}
