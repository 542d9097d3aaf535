//! The mapping file: each rule, and the errors that name what and where.

use sluice_transform::{ColumnType, Mapping, RowContext, RowError, TypedRow};

const HOTMART: &str = r#"
[table]
schema = "sales"
name = "hotmart_sales"
key = ["transaction"]
guard = "approved_at"

[columns.purchase_transaction]
rename = "transaction"

[columns.transaction]
drop = true

[columns.purchase_approved_date]
rename = "approved_at"
type = "timestamptz"
format = "epoch_millis"

[columns.purchase_price_value]
rename = "price"
type = "numeric"

[columns.purchase_is_funnel]
type = "boolean"
default = "false"

[columns.buyer_email]
redact = "hash"

[columns.buyer_phone]
redact = "null"

[columns.purchase_order_date]
type = "date"
format = "%d/%m/%Y"

[columns.channel]
default = "web"

[[derived]]
name = "buyer_label"
kind = "concat"
columns = ["buyer_name", "buyer_email"]
separator = " <"

[[derived]]
name = "source"
kind = "constant"
value = "hotmart"

[[derived]]
name = "loaded_at"
kind = "load_time"

[[derived]]
name = "object_key"
kind = "source_key"

[[derived]]
name = "written_at"
kind = "object_time"
"#;

const HEADER: [&str; 8] = [
    "transaction",
    "purchase_transaction",
    "purchase_approved_date",
    "purchase_price_value",
    "purchase_is_funnel",
    "buyer_email",
    "buyer_phone",
    "purchase_order_date",
];

fn ctx() -> RowContext {
    RowContext {
        load_time: "2024-05-06T07:08:09Z".parse().unwrap(),
        source_key: "raw/hotmart/dt=2024-05-06/a b.csv".into(),
        object_time: Some("2024-05-06T07:00:00Z".parse().unwrap()),
        salt: "s3cret".into(),
    }
}

fn apply(fields: [Option<&str>; 8]) -> Result<TypedRow, RowError> {
    let m = Mapping::from_toml(HOTMART).unwrap();
    let mut header = HEADER.to_vec();
    header.push("buyer_name");
    let bound = m.bind(&header, &[]).unwrap();
    let mut row: Vec<Option<&[u8]>> = fields.iter().map(|f| f.map(str::as_bytes)).collect();
    row.push(Some(b"Ana"));
    let mut out = TypedRow::default();
    bound.apply(&row, &ctx(), &mut out).map(|()| out)
}

#[test]
fn hotmart_mapping_renames_casts_redacts_drops_and_derives() {
    let m = Mapping::from_toml(HOTMART).unwrap();
    let mut header = HEADER.to_vec();
    header.push("buyer_name");
    let bound = m.bind(&header, &[]).unwrap();
    assert_eq!(
        bound.names(),
        [
            "transaction",
            "approved_at",
            "price",
            "purchase_is_funnel",
            "buyer_email",
            "buyer_phone",
            "purchase_order_date",
            "buyer_name",
            "channel",
            "buyer_label",
            "source",
            "loaded_at",
            "object_key",
            "written_at"
        ]
    );
    let types: Vec<_> = bound.plan().columns.iter().map(|c| c.ty).collect();
    assert_eq!(types[1], ColumnType::Timestamptz);
    assert_eq!(types[11], ColumnType::Timestamptz);
    assert_eq!(types[13], ColumnType::Timestamptz);
    let lineage: Vec<_> = bound
        .plan()
        .columns
        .iter()
        .filter(|c| c.lineage)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        lineage,
        ["loaded_at", "object_key"],
        "load time and source key are lineage"
    );
    assert_eq!(bound.plan().table.to_string(), r#""sales"."hotmart_sales""#);

    let row = apply([
        Some("HP1"),
        Some("HP1"),
        Some("1700002467173"),
        Some("297.00"),
        None,
        Some("ana@example.com"),
        Some("+55 11 9"),
        Some("14/11/2023"),
    ])
    .unwrap();
    let v: Vec<_> = row.iter().collect();
    assert_eq!(v[0], Some("HP1"));
    assert_eq!(v[1], Some("2023-11-14T22:54:27.173Z"));
    assert_eq!(v[2], Some("297.00"), "numeric keeps its exact text");
    assert_eq!(v[3], Some("false"), "default fills NULL");
    assert_eq!(v[4].unwrap().len(), 64);
    assert_ne!(v[4], Some("ana@example.com"));
    assert_eq!(v[5], None, "redact = null");
    assert_eq!(v[6], Some("2023-11-14"));
    assert_eq!(
        v[8],
        Some("web"),
        "a mapped column absent from the file gets its default"
    );
    assert_eq!(v[9], Some("Ana <ana@example.com"));
    assert_eq!(v[10], Some("hotmart"));
    assert_eq!(v[11], Some("2024-05-06T07:08:09Z"));
    assert_eq!(v[12], Some("raw/hotmart/dt=2024-05-06/a b.csv"));
    assert_eq!(v[13], Some("2024-05-06T07:00:00Z"));
}

#[test]
fn hash_is_salted_and_stable() {
    let row = |email| {
        apply([
            Some("k"),
            Some("k"),
            None,
            None,
            None,
            Some(email),
            None,
            None,
        ])
        .unwrap()
    };
    assert_eq!(row("a@x").get(4), row("a@x").get(4));
    assert_ne!(row("a@x").get(4), row("b@x").get(4));
    let m = Mapping::from_toml(HOTMART).unwrap();
    let mut header = HEADER.to_vec();
    header.push("buyer_name");
    let bound = m.bind(&header, &[]).unwrap();
    let mut out = TypedRow::default();
    let fields: Vec<Option<&[u8]>> = vec![
        Some(b"k"),
        Some(b"k"),
        None,
        None,
        None,
        Some(b"a@x"),
        None,
        None,
        None,
    ];
    let other = RowContext {
        salt: "other".into(),
        ..ctx()
    };
    bound.apply(&fields, &other, &mut out).unwrap();
    assert_ne!(
        out.get(4),
        row("a@x").get(4),
        "a different salt gives a different hash"
    );
}

#[test]
fn row_errors_name_column_value_and_reason() {
    let err = apply([
        Some("k"),
        Some("k"),
        Some("yesterday"),
        None,
        None,
        None,
        None,
        None,
    ])
    .unwrap_err();
    assert_eq!(err.column, "approved_at");
    assert_eq!(err.value.as_deref(), Some("yesterday"));
    assert!(err.reason.contains("epoch milliseconds"), "{err}");
    assert!(
        err.to_string()
            .starts_with(r#"column "approved_at": not an epoch milliseconds"#),
        "{err}"
    );

    let long = "9".repeat(500) + "x";
    let err = apply([
        Some("k"),
        Some("k"),
        None,
        Some(&long),
        None,
        None,
        None,
        None,
    ])
    .unwrap_err();
    assert_eq!(err.column, "price");
    assert_eq!(
        err.value.as_ref().unwrap().chars().count(),
        61,
        "value truncated"
    );

    let err = apply([
        Some("k"),
        Some("k"),
        None,
        None,
        Some("maybe"),
        None,
        None,
        None,
    ])
    .unwrap_err();
    assert_eq!(err.column, "purchase_is_funnel");

    let err = apply([Some("k"), None, None, None, None, None, None, None]).unwrap_err();
    assert_eq!(
        (err.column.as_str(), err.reason.as_str()),
        ("transaction", "the key is missing (NULL)")
    );
    let err = apply([Some("k"), Some(""), None, None, None, None, None, None]).unwrap_err();
    assert_eq!(err.reason, "the key is empty");
    let err = apply([Some("k"), Some("a\0b"), None, None, None, None, None, None]).unwrap_err();
    assert!(err.reason.contains("NUL"));

    let m = Mapping::from_toml("[table]\nname='t'\nkey=['purchase_transaction']").unwrap();
    let bound = m.bind(&["purchase_transaction"], &[]).unwrap();
    let mut out = TypedRow::default();
    let err = bound
        .apply(&[Some(b"a"), Some(b"b")], &ctx(), &mut out)
        .unwrap_err();
    assert!(err.reason.contains("row has 2 fields, the header has 1"));
    let err = bound
        .apply(&[Some(b"\xff\xfe")], &ctx(), &mut out)
        .unwrap_err();
    assert!(err.reason.contains("invalid UTF-8"));
}

#[test]
fn mapping_errors_name_the_key() {
    let cases = [
        (
            "[table]\nname='t'\nkey=['a']\n[columns.a]\ntype='varchar'",
            "columns.a.type",
        ),
        (
            "[table]\nname='t'\nkey=['a']\n[columns.a]\nformat='epoch_millis'",
            "columns.a.format",
        ),
        (
            "[table]\nname='t'\nkey=['a']\n[columns.a]\ntype='timestamptz'\nformat='when'",
            "columns.a.format",
        ),
        (
            "[table]\nname='t'\nkey=['a']\n[columns.a]\ntype='timestamptz'\ntimezone='Mars/Olympus'",
            "columns.a.timezone",
        ),
        (
            "[table]\nname='t'\nkey=['a']\n[columns.a]\ntype='bigint'\ndefault='x'",
            "columns.a.default",
        ),
        (
            "[table]\nname='t'\nkey=['a']\n[columns.a]\ntype='bigint'\nredact='hash'",
            "columns.a.redact",
        ),
        (
            "[table]\nname='t'\nkey=['a']\n[[derived]]\nname='d'\nkind='constant'",
            "derived[0] (d)",
        ),
        (
            "[table]\nname='t'\nkey=['a']\nfillfactor=5",
            "table.fillfactor",
        ),
        ("[table]\nname='t'\nkey=['a']\nfillfactor=300", "fillfactor"),
        (
            "[table]\nname='t'\nkey=['a']\n[[derived]]\nname='d'\nkind='magic'",
            "derived[0] (d)",
        ),
        (
            "[table]\nname='t'\nkey=['a']\n[[derived]]\nname='h'\nkind='row_hash'\ntype='text'",
            "derived[0] (h).type",
        ),
        (
            "[table]\nname='t'\nkey=['a']\n[[derived]]\nname='h'\nkind='row_hash'\n[[derived]]\nname='g'\nkind='row_hash'",
            "derived[1] (g)",
        ),
    ];
    for (toml, key) in cases {
        let err = Mapping::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{err} should name {key}");
    }
    let err = Mapping::from_toml("[table]\nname='t'\nkey=['a']\n[columns.a]\ntypo=1").unwrap_err();
    assert!(err.to_string().contains("typo"), "{err}");
}

const HASHED: &str = "[table]\nname='t'\nkey=['id']\n[columns.n]\ntype='numeric'\n\
    [[derived]]\nname='h'\nkind='row_hash'\n[[derived]]\nname='at'\nkind='load_time'";

/// `header`'s row `fields` under [`HASHED`]: the row hash as stored.
fn stored_hash(header: &[&str], fields: &[Option<&str>], ctx: &RowContext) -> String {
    let m = Mapping::from_toml(HASHED)
        .unwrap()
        .bind(header, &[])
        .unwrap();
    let fields: Vec<Option<&[u8]>> = fields.iter().map(|f| f.map(str::as_bytes)).collect();
    let mut row = TypedRow::default();
    m.apply(&fields, ctx, &mut row).unwrap();
    let i = m.names().iter().position(|n| *n == "h").unwrap();
    row.get(i).unwrap().to_owned()
}

#[test]
fn the_row_hash_covers_the_compared_values_by_name_and_not_key_nor_lineage() {
    let m = Mapping::from_toml(HASHED)
        .unwrap()
        .bind(&["id", "n", "s"], &[]);
    let plan = m.unwrap().plan().clone();
    assert_eq!(plan.row_hash.as_deref(), Some("h"));
    let h = plan.columns.iter().find(|c| c.name == "h").unwrap();
    assert!(h.lineage && h.ty == ColumnType::Uuid, "{h:?}");
    let hash = |header: &[&str], fields: &[Option<&str>]| stored_hash(header, fields, &ctx());
    let base = hash(&["id", "n", "s"], &[Some("k1"), Some("1.50"), Some("x")]);
    assert_eq!(base.len(), 36, "a uuid's text: {base}");
    // The converted value is hashed (1.5 and 1.50 are other texts, so other hashes), by name:
    // another column order, another key or another load time give the same hash.
    assert_eq!(
        hash(&["s", "id", "n"], &[Some("x"), Some("k1"), Some("1.50")]),
        base
    );
    assert_eq!(
        hash(&["id", "n", "s"], &[Some("k2"), Some("1.50"), Some("x")]),
        base
    );
    let later = RowContext {
        load_time: jiff::Timestamp::from_second(1).unwrap(),
        ..ctx()
    };
    let fields = [Some("k1"), Some("1.50"), Some("x")];
    assert_eq!(stored_hash(&["id", "n", "s"], &fields, &later), base);
    assert_ne!(
        hash(&["id", "n", "s"], &[Some("k1"), Some("1.5"), Some("x")]),
        base
    );
    assert_ne!(
        hash(&["id", "n", "s"], &[Some("k1"), Some("1.50"), Some("")]),
        base
    );
    // A NULL counts as absent: a new column of NULLs leaves the hash as it was.
    let no_s = hash(&["id", "n"], &[Some("k1"), Some("1.50")]);
    assert_eq!(
        hash(&["id", "n", "s"], &[Some("k1"), Some("1.50"), None]),
        no_s
    );
    assert_ne!(no_s, base);
    // Values moved between columns are a change.
    let ab = hash(&["id", "s", "u"], &[Some("k1"), Some("a"), Some("b")]);
    assert_ne!(
        hash(&["id", "s", "u"], &[Some("k1"), Some("b"), Some("a")]),
        ab
    );
}

#[test]
fn a_fillfactor_goes_into_the_created_table() {
    let m = Mapping::from_toml("[table]\nname='t'\nkey=['id']\nfillfactor=70").unwrap();
    let sql = m.bind(&["id"], &[]).unwrap().plan().create_table();
    assert!(
        sql.ends_with(r#"PRIMARY KEY ("id")) WITH (fillfactor = 70)"#),
        "{sql}"
    );
    let m = Mapping::from_toml("[table]\nname='t'\nkey=['id']").unwrap();
    let sql = m.bind(&["id"], &[]).unwrap().plan().create_table();
    assert!(!sql.contains("fillfactor"), "{sql}");
}

#[test]
fn bind_errors() {
    let m = Mapping::from_toml("[table]\nname='t'\nkey=['id']\n[columns.b]\nrename='a'").unwrap();
    let err = m.bind(&["id", "a", "b"], &[]).unwrap_err().to_string();
    assert!(err.contains("produced twice"), "{err}");
    let err = m.bind(&["x"], &[]).unwrap_err().to_string();
    assert!(
        err.contains("key column \"id\" is not among the columns"),
        "{err}"
    );
    let g = Mapping::from_toml("[table]\nname='t'\nkey=['id']\nguard='v'").unwrap();
    assert!(
        g.bind(&["id"], &[])
            .unwrap_err()
            .to_string()
            .contains("guard column \"v\"")
    );
}

#[test]
fn inferred_types_apply_to_unmapped_columns() {
    let m = Mapping::from_toml("[table]\nname='t'\nkey=['id']").unwrap();
    let bound = m
        .bind(&["id", "n"], &[ColumnType::Bigint, ColumnType::Numeric])
        .unwrap();
    let mut out = TypedRow::default();
    bound
        .apply(&[Some(b"1"), Some(b"1e400")], &RowContext::now(), &mut out)
        .unwrap();
    assert_eq!(out.get(1), Some("1e400"));
    assert!(
        bound
            .apply(&[Some(b"x"), None], &RowContext::now(), &mut out)
            .is_err()
    );
}

#[test]
fn lineage_times_are_written_as_their_conversion_writes_them_and_a_missing_one_is_null() {
    let m = Mapping::from_toml(HOTMART).unwrap();
    let mut header = HEADER.to_vec();
    header.push("buyer_name");
    let bound = m.bind(&header, &[]).unwrap();
    let names = bound.names();
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    let ctx = RowContext {
        load_time: "2024-05-06T07:08:09.123456789+00:00".parse().unwrap(),
        object_time: None,
        ..ctx()
    };
    let fields = [
        "7",
        "HP1",
        "1714978089000",
        "10.5",
        "true",
        "a@b.co",
        "",
        "06/05/2024",
    ];
    let mut row: Vec<Option<&[u8]>> = fields.iter().map(|f| Some(f.as_bytes())).collect();
    row.push(Some(b"Ana"));
    let mut out = TypedRow::default();

    bound.apply(&row, &ctx, &mut out).unwrap();

    let converted = sluice_transform::Conversion::plain(ColumnType::Timestamptz)
        .convert(&ctx.load_time.to_string())
        .unwrap();
    assert_eq!(out.get(at("loaded_at")), Some(converted.as_str()));
    assert_eq!(
        out.get(at("loaded_at")),
        Some("2024-05-06T07:08:09.123456789Z")
    );
    assert_eq!(out.get(at("written_at")), None);
    assert_eq!(out.get(at("source")), Some("hotmart"));
}
