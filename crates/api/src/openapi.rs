//! The OpenAPI documents, generated from the datasets: 3.1 (JSON Schema 2020-12, served at
//! `/openapi.json`) and 3.0 (`/openapi-3.0.json`, the newest API Gateway imports). Every
//! response the routes give is documented.
//!
//! ```
//! use sluice_api::{Datasets, openapi::{self, Version}};
//!
//! let datasets = Datasets::from_dir("../../datasets".as_ref()).unwrap();
//! let doc = openapi::document(&datasets, Version::V3_1);
//! let unicorn = &doc["components"]["schemas"]["unicorns"];
//! assert_eq!(unicorn["properties"]["horn_length_cm"]["exclusiveMinimum"], 0);
//! assert_eq!(unicorn["properties"]["observer_email"]["type"], serde_json::json!(["string", "null"]));
//! let old = openapi::document(&datasets, Version::V3_0);
//! assert_eq!(old["components"]["schemas"]["unicorns"]["properties"]["horn_length_cm"]["exclusiveMinimum"], true);
//! ```

use serde_json::{Map, Value, json};

use crate::dataset::{Bounds, Dataset, Datasets, Field, Format, Kind, Presence};

/// Which OpenAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 3.1.0: schemas are JSON Schema 2020-12 (`"type": ["string", "null"]`, numeric
    /// `exclusiveMinimum`).
    V3_1,
    /// 3.0.3: `nullable: true`, boolean `exclusiveMinimum` beside `minimum`.
    V3_0,
}

/// The whole document.
pub fn document(datasets: &Datasets, v: Version) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for d in datasets.iter() {
        schemas.insert(d.name.clone(), record_schema(d, v));
        let item = json!({ "$ref": format!("#/components/schemas/{}", d.name) });
        let batch = json!({"type": "array", "items": item, "minItems": 1, "maxItems": d.max_batch});
        paths.insert(
            format!("/{}", d.name),
            json!({"post": operation(d, "one", "Store one record", item)}),
        );
        paths.insert(
            format!("/{}/batch", d.name),
            json!({"post": operation(d, "batch", &format!("Store 1 to {} records, all or none", d.max_batch), batch)}),
        );
    }
    paths.insert(
        "/health".into(),
        json!({"get": {"operationId": "health", "summary": "Liveness",
            "responses": {"200": {"description": "Up", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"status": {"type": "string", "enum": ["ok"]}}, "required": ["status"]}}}}}}}),
    );
    paths.insert(
        "/datasets".into(),
        json!({"get": {"operationId": "list_datasets", "summary": "The datasets and their versions",
            "responses": {"200": {"description": "The datasets", "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/DatasetList"}}}}}}}),
    );
    for (name, schema) in shared_schemas(v) {
        schemas.insert(name.into(), schema);
    }
    json!({
        "openapi": match v { Version::V3_1 => "3.1.0", Version::V3_0 => "3.0.3" },
        "info": {
            "title": "sluice collection API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Records posted as JSON are validated against their dataset and stored in the S3 lake as Parquet before 201 is sent. Errors are FastAPI's: 422 {\"detail\": [{\"type\", \"loc\", \"msg\", \"input\", \"ctx\"}]}.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn operation(d: &Dataset, shape: &str, summary: &str, body: Value) -> Value {
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPError"}}}});
    let mut parameters = vec![json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "Names the stored object: a retry with the same key stores nothing twice. Else a UUIDv7.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9-][A-Za-z0-9._-]{0,127}$"},
    })];
    if shape == "batch" {
        parameters.push(json!({
            "name": "partial", "in": "query", "required": false,
            "description": "Store the valid items and set the others aside under rejected/ (201 with their problems in detail; 422 when none is valid).",
            "schema": {"type": "boolean", "default": false},
        }));
    }
    json!({
        "operationId": format!("post_{}_{shape}", d.name.replace('-', "_")),
        "summary": summary,
        "description": d.description.clone().unwrap_or_default(),
        "tags": [d.name],
        "parameters": parameters,
        "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
        "responses": {
            "201": {"description": "Stored in the lake", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
            "400": error("A bad Idempotency-Key, or a body that could not be read"),
            "404": error("No such dataset"),
            "409": error("The Idempotency-Key was used before with another body"),
            "413": error("The body is over the size limit"),
            "415": error("The body is not application/json"),
            "422": {"description": "Validation errors, every one, in pydantic's form", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}},
            "503": error("The lake could not store the records; nothing was kept; retry"),
        },
    })
}

/// One record of `d`, as a JSON Schema object.
fn record_schema(d: &Dataset, v: Version) -> Value {
    let mut s = object_schema(&d.fields, v);
    s["title"] = json!(d.name);
    if let Some(desc) = &d.description {
        s["description"] = json!(desc);
    }
    s
}

fn object_schema(fields: &[Field], v: Version) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.clone(), field_schema(f, v)))
        .collect();
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.presence == Presence::Required)
        .map(|f| f.name.as_str())
        .collect();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn field_schema(f: &Field, v: Version) -> Value {
    let mut s = kind_schema(&f.kind, v);
    if f.nullable {
        match v {
            Version::V3_0 => s["nullable"] = json!(true),
            Version::V3_1 => {
                let ty = s["type"].clone();
                s["type"] = json!([ty, "null"]);
                if let Some(values) = s.get_mut("enum").and_then(Value::as_array_mut) {
                    values.push(Value::Null);
                }
            }
        }
    }
    if let Presence::Optional {
        default: Some(default),
    } = &f.presence
    {
        s["default"] = default.clone();
    }
    if let Some(d) = &f.description {
        s["description"] = json!(d);
    }
    s
}

fn kind_schema(kind: &Kind, v: Version) -> Value {
    match kind {
        Kind::String(rule) => {
            let mut s = json!({"type": "string"});
            if let Some(n) = rule.min_length {
                s["minLength"] = json!(n);
            }
            if let Some(n) = rule.max_length {
                s["maxLength"] = json!(n);
            }
            if let Some(p) = &rule.pattern {
                s["pattern"] = json!(p.source);
            }
            if let Some(f) = rule.format {
                s["format"] = json!(match f {
                    Format::Email => "email",
                    Format::Uuid => "uuid",
                    Format::Date => "date",
                    Format::DateTime => "date-time",
                });
            }
            s
        }
        Kind::Integer(b) => bounds(json!({"type": "integer", "format": "int64"}), *b, v),
        Kind::Number(b) => bounds(json!({"type": "number", "format": "double"}), *b, v),
        Kind::Boolean => json!({"type": "boolean"}),
        Kind::Enum(values) => json!({"type": "string", "enum": values}),
        Kind::Object(fields) => object_schema(fields, v),
        Kind::Array {
            items,
            min_items,
            max_items,
        } => {
            let mut s = json!({"type": "array", "items": kind_schema(items, v)});
            if let Some(n) = min_items {
                s["minItems"] = json!(n);
            }
            if let Some(n) = max_items {
                s["maxItems"] = json!(n);
            }
            s
        }
    }
}

fn bounds(mut s: Value, b: Bounds, v: Version) -> Value {
    let n = crate::dataset::json_number;
    if let Some(x) = b.ge {
        s["minimum"] = n(x);
    }
    if let Some(x) = b.le {
        s["maximum"] = n(x);
    }
    match v {
        Version::V3_1 => {
            if let Some(x) = b.gt {
                s["exclusiveMinimum"] = n(x);
            }
            if let Some(x) = b.lt {
                s["exclusiveMaximum"] = n(x);
            }
        }
        Version::V3_0 => {
            if let Some(x) = b.gt {
                s["minimum"] = n(x);
                s["exclusiveMinimum"] = json!(true);
            }
            if let Some(x) = b.lt {
                s["maximum"] = n(x);
                s["exclusiveMaximum"] = json!(true);
            }
        }
    }
    s
}

/// The responses' schemas, the same for every dataset.
fn shared_schemas(v: Version) -> Vec<(&'static str, Value)> {
    let any = match v {
        Version::V3_1 => json!({}),
        Version::V3_0 => json!({"nullable": true}),
    };
    let loc_item = match v {
        Version::V3_1 => json!({"type": ["string", "integer"]}),
        Version::V3_0 => json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
    };
    vec![
        (
            "Accepted",
            json!({"type": "object", "required": ["accepted", "key", "event_id"], "properties": {
                "accepted": {"type": "integer", "minimum": 1, "description": "Records stored"},
                "key": {"type": "string", "description": "The lake object: lake/<dataset>/dt=YYYY-MM-DD/<event id>.parquet"},
                "event_id": {"type": "string", "description": "The Idempotency-Key, else a UUIDv7"},
                "rejected": {"type": "integer", "description": "partial batches: items set aside"},
                "rejected_key": {"type": "string", "description": "partial batches: rejected/<dataset>/dt=YYYY-MM-DD/<event id>.jsonl"},
                "detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}, "description": "partial batches: the set-aside items' problems"},
            }}),
        ),
        (
            "ValidationError",
            json!({"type": "object", "required": ["type", "loc", "msg"], "properties": {
                "type": {"type": "string", "description": "pydantic's error type: missing, int_type, …"},
                "loc": {"type": "array", "items": loc_item},
                "msg": {"type": "string"},
                "input": any,
                "ctx": {"type": "object"},
            }}),
        ),
        (
            "HTTPValidationError",
            json!({"type": "object", "required": ["detail"], "properties": {
                "detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
            }}),
        ),
        (
            "HTTPError",
            json!({"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}),
        ),
        (
            "DatasetList",
            json!({"type": "object", "required": ["datasets"], "properties": {"datasets": {"type": "array", "items": {
            "type": "object", "required": ["name", "version", "max_batch"], "properties": {
                "name": {"type": "string"}, "version": {"type": "integer"},
                "description": match v { Version::V3_1 => json!({"type": ["string", "null"]}), Version::V3_0 => json!({"type": "string", "nullable": true}) },
                "max_batch": {"type": "integer"},
            }}}}}),
        ),
    ]
}
