//! One test per flattening rule: each fails if its rule breaks.

use sluice_flatten::{
    ArrayPolicy, CsvPipeline, CsvReader, CsvRecord, CsvWriter, Error, Flattener, InputFormat,
    JsonTypes, Options, PartEnd, RecordReader, Schema, Segment, SourcePath,
};

fn flat(json: &str, opts: Options) -> (Vec<String>, Vec<Option<String>>) {
    let mut f = Flattener::new(opts);
    let row = f.flatten(json.as_bytes()).unwrap();
    let values = row.iter().map(|v| v.map(str::to_owned)).collect();
    (f.schema().names().map(str::to_owned).collect(), values)
}

fn index() -> Options {
    Options {
        arrays: ArrayPolicy::Index,
        ..Options::default()
    }
}

const HOTMART: &str = r#"{"transaction": "HP0000001", "product": {"id": 1200006, "name": "Formação Python do Zero"},
 "buyer": {"name": "Diego Gomes", "email": "diego.gomes1@example.com", "ucode": "Bd7644efc24f2", "phone": "+55 11 938067551",
   "address": {"city": "Brasília", "state": "DF", "country": "Brasil", "zipcode": "30912-542"}},
 "producer": {"name": "Escola Exemplo LTDA", "ucode": "P000000124f86"},
 "purchase": {"transaction": "HP0000001", "approved_date": 1700002467173, "order_date": 1700000078129, "status": "APPROVED",
   "is_subscription": false, "is_funnel": false, "warranty_expire_date": 1702594467173, "date_next_charge": null,
   "recurrency_number": 1, "commission_as": "PRODUCER", "price": {"value": 297.0, "currency_code": "BRL"},
   "payment": {"method": "CREDIT_CARD", "installments_number": 2, "type": "CREDIT_CARD"},
   "offer": {"code": "c19c7ab7", "payment_mode": "INVOICE"},
   "tracking": {"source_sck": "instagram_bio", "source": "PRODUCER", "external_code": "ext-793756"},
   "hotmart_fee": {"total": 30.4, "fixed": 1.0, "currency_code": "BRL", "base": 297.0, "percentage": 9.9}},
 "commissions": [{"value": 187.11, "source": "PRODUCER", "currency_code": "BRL"}, {"value": 80.19, "source": "AFFILIATE", "currency_code": "BRL"}]}"#;

fn get<'a>(names: &[String], values: &'a [Option<String>], name: &str) -> Option<&'a str> {
    let i = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no column {name}: {names:?}"));
    values[i].as_deref()
}

#[test]
fn seed_example_joins_keys_depth_first() {
    let (names, values) = flat(r#"{"purchase":{"price":{"value":97}}}"#, Options::default());
    assert_eq!(names, ["purchase_price_value"]);
    assert_eq!(values, [Some("97".to_owned())]);
}

#[test]
fn hotmart_record_flattens_like_the_seed_with_arrays_as_json() {
    let (names, values) = flat(HOTMART, Options::default());
    assert_eq!(names.len(), 39);
    assert_eq!(names[0], "transaction");
    assert_eq!(
        get(&names, &values, "product_name"),
        Some("Formação Python do Zero")
    );
    assert_eq!(get(&names, &values, "buyer_address_city"), Some("Brasília"));
    assert_eq!(
        get(&names, &values, "purchase_approved_date"),
        Some("1700002467173")
    );
    assert_eq!(get(&names, &values, "purchase_price_value"), Some("297.0"));
    assert_eq!(
        get(&names, &values, "purchase_is_subscription"),
        Some("false")
    );
    assert_eq!(get(&names, &values, "purchase_date_next_charge"), None);
    assert_eq!(
        get(&names, &values, "commissions"),
        Some(
            r#"[{"value":187.11,"source":"PRODUCER","currency_code":"BRL"},{"value":80.19,"source":"AFFILIATE","currency_code":"BRL"}]"#
        )
    );
    let (names, values) = flat(HOTMART, index());
    assert_eq!(names.len(), 44);
    assert_eq!(
        get(&names, &values, "commissions_1_source"),
        Some("AFFILIATE")
    );
    assert_eq!(names.last().unwrap(), "commissions_1_currency_code");
}

#[test]
fn columns_keep_first_seen_order_across_records() {
    let mut f = Flattener::new(Options::default());
    f.flatten(br#"{"b":1,"a":{"z":1,"y":2}}"#).unwrap();
    let row = f.flatten(br#"{"c":3,"a":{"y":5,"x":6},"b":4}"#).unwrap();
    assert_eq!(row.get(0), Some("4"));
    assert_eq!(row.get(1), None, "a_z absent in record 2 is NULL");
    assert_eq!(row.get(2), Some("5"));
    let names: Vec<_> = f.schema().names().collect();
    assert_eq!(names, ["b", "a_z", "a_y", "c", "a_x"]);
}

#[test]
fn arrays_as_compact_json_text_by_default() {
    let (names, values) = flat(
        r#"{"tags" : [ 1 , "a b" , {"k" : [ ] } ], "n": []}"#,
        Options::default(),
    );
    assert_eq!(names, ["tags", "n"]);
    assert_eq!(values[0].as_deref(), Some(r#"[1,"a b",{"k":[]}]"#));
    assert_eq!(values[1].as_deref(), Some("[]"));
}

#[test]
fn arrays_indexed_on_request() {
    let (names, values) = flat(
        r#"{"c":[{"v":1},{"v":2,"w":[true,[3]]}],"s":["x"]}"#,
        index(),
    );
    assert_eq!(names, ["c_0_v", "c_1_v", "c_1_w_0", "c_1_w_1_0", "s_0"]);
    assert_eq!(values[3].as_deref(), Some("3"));
    assert_eq!(values[4].as_deref(), Some("x"));
}

#[test]
fn empty_objects_and_arrays_keep_their_column() {
    for opts in [Options::default(), index()] {
        let (names, values) = flat(r#"{"o":{},"a":[],"x":{"e":{}}}"#, opts);
        assert_eq!(names, ["o", "a", "x_e"]);
        assert_eq!(
            values,
            [Some("{}".into()), Some("[]".into()), Some("{}".into())]
        );
    }
}

#[test]
fn max_depth_keeps_deeper_subtrees_as_json_text() {
    let json = r#"{"a":{"b":{"c":1,"d":[1, 2]}},"e":1}"#;
    let depth = |d| Options {
        max_depth: Some(d),
        arrays: ArrayPolicy::Index,
        ..Options::default()
    };
    assert_eq!(
        flat(json, depth(1)).1[0].as_deref(),
        Some(r#"{"b":{"c":1,"d":[1,2]}}"#)
    );
    assert_eq!(flat(json, depth(2)).0, ["a_b", "e"]);
    assert_eq!(
        flat(json, depth(2)).1[0].as_deref(),
        Some(r#"{"c":1,"d":[1,2]}"#)
    );
    assert_eq!(flat(json, depth(3)).0, ["a_b_c", "a_b_d", "e"]);
    assert_eq!(flat(json, depth(4)).0, ["a_b_c", "a_b_d_0", "a_b_d_1", "e"]);
}

#[test]
fn numbers_keep_their_exact_text() {
    let (_, values) = flat(
        r#"{"a":0.1,"b":1e400,"c":18446744073709551616,"d":97.00,"e":-0,"f":1E+2,"g":-12.5e-3}"#,
        Options::default(),
    );
    let want = [
        "0.1",
        "1e400",
        "18446744073709551616",
        "97.00",
        "-0",
        "1E+2",
        "-12.5e-3",
    ];
    assert_eq!(values, want.map(|s| Some(s.to_owned())));
}

#[test]
fn booleans_and_null() {
    let (_, values) = flat(r#"{"t":true,"f":false,"n":null}"#, Options::default());
    assert_eq!(values, [Some("true".into()), Some("false".into()), None]);
}

#[test]
fn strings_are_unescaped_exactly() {
    let (_, values) = flat(
        r#"{"s":"a\"b\\c\n\u00e7\ud83d\ude00","e":""}"#,
        Options::default(),
    );
    assert_eq!(values[0].as_deref(), Some("a\"b\\c\nç😀"));
    assert_eq!(values[1].as_deref(), Some(""));
}

#[test]
fn names_are_lower_snake_ascii_with_accents_transliterated() {
    let (names, _) = flat(
        r#"{"Ação":1,"dataDeCompra":2,"São Paulo":3,"a-b.c":4,"1st":5}"#,
        Options::default(),
    );
    assert_eq!(
        names,
        ["acao", "data_de_compra", "sao_paulo", "a_b_c", "_1st"]
    );
}

#[test]
fn colliding_paths_both_survive_and_are_reported() {
    let mut f = Flattener::new(Options::default());
    let row = f
        .flatten(br#"{"a_b":1,"a":{"b":2},"Price":3,"price":4}"#)
        .unwrap();
    assert_eq!(
        row.iter().collect::<Vec<_>>(),
        [Some("1"), Some("2"), Some("3"), Some("4")]
    );
    let names: Vec<_> = f.schema().names().collect();
    assert_eq!(names, ["a_b", "a_b_2", "price", "price_2"]);
    let c = f.schema().collisions();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].path.to_string(), "$.a.b");
    assert_eq!(c[0].existing.to_string(), "$.a_b");
    assert_eq!(c[1].assigned, "price_2");
    assert!(c[1].to_string().contains("both map to \"price\""));
    // Deterministic: the same input gives the same names.
    let mut g = Flattener::new(Options::default());
    g.flatten(br#"{"a_b":1,"a":{"b":2},"Price":3,"price":4}"#)
        .unwrap();
    assert_eq!(g.schema().names().collect::<Vec<_>>(), names);
}

#[test]
fn system_columns_empty_keys_symbols_and_emoji_become_valid_unique_names() {
    let json = r#"{"xmin":1,"xmax":2,"cmin":3,"cmax":4,"ctid":5,"tableoid":6,"":7,"$%":8,"🔥":9,"🎉🎉":10,"_":11}"#;
    let (names, values) = flat(json, Options::default());
    assert_eq!(values.len(), 11);
    assert_eq!(
        &names[..6],
        ["xmin_", "xmax_", "cmin_", "cmax_", "ctid_", "tableoid_"]
    );
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for n in &names {
        assert!(valid_ident(n), "{n:?} is not a valid identifier");
    }
}

fn valid_ident(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && !n.as_bytes()[0].is_ascii_digit()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[test]
fn long_names_are_shortened_with_a_stable_hash() {
    let long = "k".repeat(40);
    let json = format!(r#"{{"{long}":{{"{long}":{{"a":1,"b":2}}}}}}"#);
    let (names, _) = flat(&json, Options::default());
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| n.len() == 63), "{names:?}");
    assert_ne!(names[0], names[1], "distinct paths stay distinct");
    let (again, _) = flat(&json, Options::default());
    assert_eq!(names, again, "stable across runs");
}

#[test]
fn schema_records_paths_and_types_and_round_trips_as_manifest() {
    let mut f = Flattener::new(Options::default());
    f.flatten(br#"{"a":1,"b":{"c":"x"},"d":[1]}"#).unwrap();
    f.flatten(br#"{"a":1.5,"b":{"c":null},"d":{}}"#).unwrap();
    let cols = f.schema().columns();
    assert_eq!(cols[0].types.names(), ["integer", "float"]);
    assert_eq!(cols[1].types.names(), ["null", "string"]);
    assert_eq!(cols[2].types.names(), ["object", "array"]);
    assert!(cols[1].types.contains(JsonTypes::STRING));
    assert_eq!(
        cols[1].path,
        SourcePath(vec![Segment::Key("b".into()), Segment::Key("c".into())])
    );
    let json = serde_json::to_string_pretty(&f.manifest()).unwrap();
    assert!(json.contains(r#""path": ["#), "{json}");
    let back: sluice_flatten::Manifest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, f.manifest());
    // A flattener resumed from the manifest keeps names and order, and appends new columns.
    let schema = Schema::from_manifest(&back);
    let mut g = Flattener::with_schema(Options::default(), &schema);
    let row = g.flatten(br#"{"new":1,"b":{"c":"y"}}"#).unwrap();
    assert_eq!(row.get(1), Some("y"));
    assert_eq!(
        g.schema().names().collect::<Vec<_>>(),
        ["a", "b_c", "d", "new"]
    );
}

#[test]
fn path_display_is_jsonpath() {
    let p = SourcePath(vec![
        Segment::Key("a.b".into()),
        Segment::Index(0),
        Segment::Key("c".into()),
    ]);
    assert_eq!(p.to_string(), r#"$["a.b"][0].c"#);
}

#[test]
fn duplicate_keys_last_wins() {
    let (names, values) = flat(r#"{"a":1,"a":2}"#, Options::default());
    assert_eq!(names, ["a"]);
    assert_eq!(values, [Some("2".into())]);
}

fn records(input: &[u8], format: InputFormat) -> Result<Vec<(u64, u64, String)>, Error> {
    let mut r = RecordReader::new(input, format);
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push((
            rec.number,
            rec.offset,
            String::from_utf8(rec.bytes.to_vec()).unwrap(),
        ));
    }
    Ok(out)
}

#[test]
fn streams_json_lines_arrays_and_paths() {
    let lines = records(b"{\"a\":1}\r\n\n  {\"a\":[2]}\n", InputFormat::Auto).unwrap();
    assert_eq!(
        lines,
        [(1, 0, r#"{"a":1}"#.into()), (2, 12, r#"{"a":[2]}"#.into())]
    );
    let arr = records(b" [ {\"a\":\"]\"} , {\"a\":2} ] ", InputFormat::Auto).unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0].2, r#"{"a":"]"}"#);
    let page = br#"{"meta":{"x":[1,{"items":[]}]},"items":[{"a":1},{"a":2}],"page_info":{"next_page_token":"t"}}"#;
    let items = records(page, InputFormat::path("items")).unwrap();
    assert_eq!(
        items.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        [r#"{"a":1}"#, r#"{"a":2}"#]
    );
    let nested = records(
        br#"{"data":{"rows":[{"a":1}]}}"#,
        InputFormat::path("data.rows"),
    )
    .unwrap();
    assert_eq!(nested.len(), 1);
    assert!(records(b"", InputFormat::Auto).unwrap().is_empty());
    assert!(records(b" \n ", InputFormat::JsonLines).unwrap().is_empty());
    assert!(records(b"[]", InputFormat::Array).unwrap().is_empty());
    assert_eq!(
        records(b"\xEF\xBB\xBF{\"a\":1}", InputFormat::Auto)
            .unwrap()
            .len(),
        1,
        "BOM skipped"
    );
}

#[test]
fn framing_errors_name_the_offset_and_record() {
    let err = records(br#"{"items":[{"a":1},{"a":"#, InputFormat::path("items")).unwrap_err();
    match err {
        Error::Input {
            record, message, ..
        } => {
            assert_eq!(record, 2);
            assert!(message.contains("truncated"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let err = records(br#"{"data":[]}"#, InputFormat::path("items")).unwrap_err();
    assert!(
        err.to_string().contains("records path \"items\" not found"),
        "{err}"
    );
    let err = records(br#"[{"a":1} {"a":2}]"#, InputFormat::Array).unwrap_err();
    assert!(err.to_string().contains("expected ',' or ']'"), "{err}");
    let err = records(br#"{"items":[],"x":1"#, InputFormat::path("items")).unwrap_err();
    assert!(err.to_string().contains("input ends"), "{err}");
}

#[test]
fn record_errors_name_record_offset_and_json_path() {
    let input = b"{\"a\":1}\n{\"a\":2}\n{\"a\":{\"b\":tru}}\n";
    let mut p = CsvPipeline::new(&input[..], InputFormat::JsonLines, Options::default()).unwrap();
    let err = p.write_part(Vec::new()).unwrap_err();
    match &err {
        Error::Record {
            record,
            offset,
            path,
            ..
        } => {
            assert_eq!(*record, 3);
            assert_eq!(
                *offset,
                16 + 13,
                "byte offset where the bad literal fails to parse"
            );
            assert_eq!(path, "$.a.b");
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with("record 3 (input byte 29, at $.a.b)"),
        "{msg}"
    );
}

#[test]
fn non_objects_invalid_utf8_and_garbage_are_errors_not_panics() {
    let mut f = Flattener::new(Options::default());
    assert!(
        f.flatten(b"[1]")
            .unwrap_err()
            .message
            .contains("expected a JSON object, found an array")
    );
    assert!(f.flatten(b"42").is_err());
    let e = f.flatten(b"{\"a\":\"\xff\"}").unwrap_err();
    assert_eq!((e.offset, e.message.as_str()), (6, "invalid UTF-8"));
    assert!(f.flatten(b"{\"a\":1} x").is_err(), "trailing garbage");
    assert!(f.flatten(b"{\"a\":01}").is_err());
    assert!(f.flatten(b"{\"a\":NaN}").is_err());
}

#[test]
fn deep_nesting_is_kept_as_text_or_rejected_never_overflows() {
    let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
    let mut f = Flattener::new(index());
    let row = f.flatten(deep(100).as_bytes()).unwrap();
    let text = row.iter().flatten().next().unwrap().to_owned();
    assert!(
        text.starts_with("[[["),
        "past the hard depth the subtree is JSON text"
    );
    assert!(f.flatten(deep(100_000).as_bytes()).is_err());
    let objs = format!("{}1{}", "{\"k\":".repeat(10_000), "}".repeat(10_000));
    assert!(
        Flattener::new(Options::default())
            .flatten(objs.as_bytes())
            .is_err()
    );
}

fn read_csv(bytes: &[u8]) -> Vec<Vec<Option<String>>> {
    let mut r = CsvReader::new(bytes);
    let mut rec = CsvRecord::default();
    let mut out = Vec::new();
    while r.read(&mut rec).unwrap() {
        out.push(
            rec.iter()
                .map(|f| f.map(|b| String::from_utf8(b.to_vec()).unwrap()))
                .collect(),
        );
    }
    out
}

#[test]
fn csv_has_schema_header_null_vs_empty_and_missing_columns_as_null() {
    let input = br#"{"a":"x","b":null}
{"a":"","b":"say \"hi\", then\nleave"}
{"b":"\\."}"#;
    let mut p = CsvPipeline::new(&input[..], InputFormat::JsonLines, Options::default()).unwrap();
    let mut out = Vec::new();
    let part = p.write_part(&mut out).unwrap();
    assert_eq!(
        (part.rows, part.columns, part.end),
        (3, 2, PartEnd::Finished)
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(
        text,
        "a,b\nx,\n\"\",\"say \"\"hi\"\", then\nleave\"\n,\"\\.\"\n"
    );
    let rows = read_csv(&out);
    assert_eq!(rows[1], [Some("x".into()), None]);
    assert_eq!(rows[2][0], Some(String::new()));
    assert_eq!(rows[3], [None, Some("\\.".into())]);
}

#[test]
fn schema_growth_mid_stream_starts_a_new_part() {
    let input = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3,\"b\":4}\n{\"a\":5}\n";
    let mut p = CsvPipeline::new(&input[..], InputFormat::JsonLines, Options::default()).unwrap();
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let first = p.write_part(&mut one).unwrap();
    assert_eq!(
        (first.rows, first.columns, first.end),
        (2, 1, PartEnd::SchemaGrew)
    );
    let second = p.write_part(&mut two).unwrap();
    assert_eq!(
        (second.rows, second.columns, second.end),
        (2, 2, PartEnd::Finished)
    );
    assert_eq!(String::from_utf8(one).unwrap(), "a\n1\n2\n");
    assert_eq!(String::from_utf8(two).unwrap(), "a,b\n3,4\n5,\n");
    let third = p.write_part(Vec::new()).unwrap();
    assert_eq!(third.rows, 0);
}

#[test]
fn csv_reader_handles_bom_crlf_and_reports_lines() {
    let data = b"\xEF\xBB\xBFa,b\r\n1,\"x\r\ny\"\r\n\r\n2,\r\n";
    let mut r = CsvReader::new(&data[..]);
    let mut rec = CsvRecord::default();
    let mut lines = Vec::new();
    while r.read(&mut rec).unwrap() {
        lines.push((
            rec.line,
            rec.iter()
                .map(|f| f.map(|b| b.to_vec()))
                .collect::<Vec<_>>(),
        ));
    }
    assert_eq!(lines[0].1, [Some(b"a".to_vec()), Some(b"b".to_vec())]);
    assert_eq!(
        lines[1],
        (2, vec![Some(b"1".to_vec()), Some(b"x\r\ny".to_vec())])
    );
    assert_eq!(
        lines[2],
        (4, vec![None]),
        "a blank line is one NULL field, not skipped"
    );
    assert_eq!(lines[3], (5, vec![Some(b"2".to_vec()), None]));
    assert_eq!(lines.len(), 4);
}

#[test]
fn separator_is_validated_and_used() {
    let opts = Options {
        separator: "__".into(),
        ..Options::default()
    };
    assert_eq!(flat(r#"{"a":{"b":1}}"#, opts).0, ["a__b"]);
    for bad in ["", ".", "A", "-", "123456789"] {
        let o = Options {
            separator: bad.into(),
            ..Options::default()
        };
        assert!(o.validate().is_err(), "{bad:?}");
    }
}

/// Map-shaped JSON (keys that are IDs) would add a column per key: past `max_columns` the
/// leaves go, as JSON with their paths, into one `_overflow` column, and the schema stops
/// growing.
#[test]
fn columns_past_the_cap_go_to_the_overflow_as_json() {
    let opts = Options {
        max_columns: Some(3),
        ..Options::default()
    };
    let mut f = Flattener::new(opts.clone());
    let row = f
        .flatten(br#"{"a":1,"b":2.50,"by_id":{"17":"x\"y","18":null},"t":true}"#)
        .unwrap();
    let values: Vec<Option<String>> = row.iter().map(|v| v.map(str::to_owned)).collect();
    assert_eq!(
        values,
        [
            Some("1".into()),
            Some("2.50".into()),
            Some(r#"{"$.by_id[\"17\"]":"x\"y","$.by_id[\"18\"]":null,"$.t":true}"#.into())
        ]
    );
    let overflow: serde_json::Value = serde_json::from_str(values[2].as_deref().unwrap()).unwrap();
    assert_eq!(overflow["$.t"], true);
    // Later records: known columns as before, new paths to the overflow; three columns for good.
    let row = f.flatten(br#"{"b":3,"by_id":{"19":[1,2]}}"#).unwrap();
    let values: Vec<Option<&str>> = row.iter().collect();
    assert_eq!(
        values,
        [None, Some("3"), Some(r#"{"$.by_id[\"19\"]":[1,2]}"#)]
    );
    let names: Vec<&str> = f.schema().names().collect();
    assert_eq!(names, ["a", "b", "_overflow"]);
    // A flattener that resumes from this schema keeps the overflow column.
    let mut again = Flattener::with_schema(opts.clone(), f.schema());
    let row = again.flatten(br#"{"z":1}"#).unwrap();
    assert_eq!(
        row.iter().collect::<Vec<_>>(),
        [None, None, Some(r#"{"$.z":1}"#)]
    );
    assert!(
        Options {
            max_columns: Some(1),
            ..Options::default()
        }
        .validate()
        .is_err()
    );
}

/// Found by `cargo fuzz` (csv_reader), twice: a record's first field that begins with a BOM
/// lost it on the way back, taken for the file's own BOM (at the start of the file, and after
/// blank lines, where csv-core meets its first record). Such a field is quoted.
#[test]
fn a_leading_bom_in_a_first_field_survives_a_round_trip() {
    let field = "\u{feff}b";
    let mut w = CsvWriter::new(Vec::new());
    w.write_fields([Some(field), Some(field)]).unwrap();
    w.write_fields([Some(field)]).unwrap();
    let bytes = w.into_inner().unwrap();
    assert!(bytes.starts_with(b"\""), "quoted");
    let (one, two) = (Some(field.to_owned()), vec![Some(field.to_owned()); 2]);
    assert_eq!(read_csv(&bytes), [two, vec![one.clone()]]);
    let mut w = CsvWriter::new(Vec::new());
    w.write_fields([None::<&str>]).unwrap();
    w.write_fields([None::<&str>]).unwrap();
    w.write_fields([Some(field)]).unwrap();
    assert_eq!(read_csv(&w.into_inner().unwrap())[2], [one]);
    // The file's own BOM is still dropped.
    assert_eq!(read_csv(b"\xEF\xBB\xBFa\n"), [[Some("a".to_owned())]]);
}
