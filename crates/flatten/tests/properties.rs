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

/// A reader that hands out at most `step` bytes a read: records end past the buffer's end.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(out.len()).min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// Everything a reader yields: each record's number, offset, bytes, and its row or failure;
/// then how the input ended, and the columns (names, paths, types) it left.
type Seen = (
    Vec<(u64, u64, Vec<u8>, Result<Vec<Option<String>>, String>)>,
    Option<String>,
    Vec<sluice_flatten::Column>,
);

fn framed_then_flattened(input: &[u8], format: InputFormat, step: usize) -> Seen {
    let mut r = RecordReader::new(Trickle { bytes: input, step }, format);
    let mut f = Flattener::new(Options::default());
    let mut seen = Vec::new();
    loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                let row = f
                    .flatten(rec.bytes)
                    .map(|row| row.iter().map(|v| v.map(str::to_owned)).collect());
                seen.push((
                    rec.number,
                    rec.offset,
                    rec.bytes.to_vec(),
                    row.map_err(|e| format!("{e:?}")),
                ));
            }
            Ok(None) => return (seen, None, f.schema().columns().to_vec()),
            Err(e) => return (seen, Some(e.to_string()), f.schema().columns().to_vec()),
        }
    }
}

fn flattened_in_one_pass(input: &[u8], format: InputFormat, step: usize) -> Seen {
    let mut r = RecordReader::new(Trickle { bytes: input, step }, format);
    let mut f = Flattener::new(Options::default());
    let mut seen = Vec::new();
    loop {
        match r.next_flattened(&mut f) {
            Ok(Some(rec)) => {
                let row = rec
                    .result
                    .map(|()| f.row().iter().map(|v| v.map(str::to_owned)).collect());
                let (number, offset, bytes) = (
                    rec.record.number,
                    rec.record.offset,
                    rec.record.bytes.to_vec(),
                );
                seen.push((number, offset, bytes, row.map_err(|e| format!("{e:?}"))));
            }
            Ok(None) => return (seen, None, f.schema().columns().to_vec()),
            Err(e) => return (seen, Some(e.to_string()), f.schema().columns().to_vec()),
        }
    }
}

/// Records as lines, as an array and at a path, some of them mangled.
fn documents(records: &[Vec<u8>]) -> Vec<(Vec<u8>, InputFormat)> {
    let join = |sep: &[u8]| records.join(sep);
    let mut array = b"[".to_vec();
    array.extend(join(b",\n"));
    array.extend(b"]");
    let mut page = br#"{"meta":{"x":[1,"]"]},"items":"#.to_vec();
    page.extend(&array);
    page.extend(br#","next":"a\"}"}"#);
    vec![
        (join(b"\n"), InputFormat::JsonLines),
        (join(b" "), InputFormat::Auto),
        (array, InputFormat::Array),
        (page, InputFormat::path("items")),
    ]
}

#[test]
fn one_pass_agrees_on_invalid_utf8() {
    // An array is kept as JSON text: skipped by the parser, not decoded.
    let mut bad_array = br#"{"a":[""#.to_vec();
    bad_array.push(0xFF);
    bad_array.extend(br#""],"b":1}"#);
    // A decoded string: the parser refuses it after the columns before it were made.
    let mut bad_string = br#"{"k":"v","s":""#.to_vec();
    bad_string.push(0xFF);
    bad_string.extend(br#""}"#);
    let records = [bad_array, bad_string, br#"{"a":["ok"],"z":true}"#.to_vec()];
    for (doc, format) in documents(&records) {
        let want = framed_then_flattened(&doc, format.clone(), 1 << 20);
        for bad in &want.0[..2] {
            let message = bad.3.as_ref().unwrap_err();
            assert!(message.contains("invalid UTF-8"), "{want:?}");
        }
        // What the refused records held is nowhere: not "k", nor a type.
        let names: Vec<_> = want.2.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "z"]);
        assert_eq!(flattened_in_one_pass(&doc, format, 1 << 20), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn one_pass_yields_what_framing_then_flattening_yields(
        vs in prop::collection::vec(json_object(), 1..5),
        cut in any::<prop::sample::Index>(),
        flip in any::<u8>(),
        mangle in any::<bool>(),
        step in prop_oneof![Just(1usize), 2usize..64, Just(1 << 20)],
    ) {
        let mut records: Vec<Vec<u8>> = vs.iter().map(|v| serde_json::to_vec(v).unwrap()).collect();
        if mangle {
            let r = &mut records[0];
            let i = cut.index(r.len());
            r[i] = flip;
        }
        for (doc, format) in documents(&records) {
            let want = framed_then_flattened(&doc, format.clone(), step);
            prop_assert_eq!(flattened_in_one_pass(&doc, format, step), want);
        }
    }

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
