//! flatten: any bytes give a row or an error, never a panic. For a JSON object every leaf
//! appears exactly once with its exact text, and the row survives CSV out and back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sluice_flatten::csv::{CsvReader, CsvRecord, CsvWriter};
use sluice_flatten::{ArrayPolicy, Flattener, Options};

/// The leaves a flattener must produce for `v`, as text (`None` for null).
fn leaves(v: &Value, index: bool, out: &mut Vec<Option<String>>) {
    match v {
        Value::Object(m) if m.is_empty() => out.push(Some("{}".into())),
        Value::Object(m) => m.values().for_each(|c| leaves(c, index, out)),
        Value::Array(a) if a.is_empty() => out.push(Some("[]".into())),
        Value::Array(a) if index => a.iter().for_each(|c| leaves(c, index, out)),
        Value::Array(_) => out.push(Some(serde_json::to_string(v).unwrap())),
        Value::String(s) => out.push(Some(s.clone())),
        Value::Number(n) => out.push(Some(n.to_string())),
        Value::Bool(b) => out.push(Some(b.to_string())),
        Value::Null => out.push(None),
    }
}

fn check(v: &Value, arrays: ArrayPolicy) {
    let text = serde_json::to_string(v).unwrap();
    let mut f = Flattener::new(Options {
        arrays,
        ..Options::default()
    });
    let row = f.flatten(text.as_bytes()).expect("a JSON object flattens");
    let got: Vec<Option<String>> = row.iter().map(|s| s.map(str::to_owned)).collect();
    let mut want = Vec::new();
    if let Value::Object(m) = v {
        m.values()
            .for_each(|c| leaves(c, arrays == ArrayPolicy::Index, &mut want));
    }
    assert_eq!(f.schema().len(), want.len(), "one column per leaf: {text}");
    // CSV out and back: the same fields, NULL told from "".
    let mut w = CsvWriter::new(Vec::new());
    w.write_fields(got.iter().map(|s| s.as_deref())).unwrap();
    let bytes = w.into_inner().unwrap();
    let mut rec = CsvRecord::default();
    let mut r = CsvReader::new(&bytes[..]);
    if !got.is_empty() {
        assert!(r.read(&mut rec).unwrap());
        let back: Vec<Option<String>> = rec
            .iter()
            .map(|f| f.map(|b| String::from_utf8(b.to_vec()).unwrap()))
            .collect();
        assert_eq!(back, got, "CSV round trip of {text}");
    }
    let (mut got, mut want) = (got, want);
    got.sort();
    want.sort();
    assert_eq!(got, want, "leaves of {text}");
}

fuzz_target!(|data: &[u8]| {
    let _ = Flattener::new(Options::default()).flatten(data);
    if let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(data) {
        check(&v, ArrayPolicy::Json);
        check(&v, ArrayPolicy::Index);
    }
});
