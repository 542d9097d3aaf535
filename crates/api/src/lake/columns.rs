//! Validated records appended straight to typed Arrow builders, one per column, nested ones for
//! objects and arrays: no intermediate JSON row, no decoder. Validation has already checked
//! every value against its kind, so a value that does not fit (a bug) is appended as null, and
//! Arrow refuses the batch if its column is not nullable.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBufferBuilder};
use arrow_schema::{ArrowError, FieldRef, Fields, SchemaRef};
use serde_json::Value;

use super::{Stamp, UTC, arrow_field, arrow_schema, list_item};
use crate::dataset::{Dataset, Format, Kind};

/// One batch of lake rows being built: the dataset's columns, then the stamp's.
pub(super) struct Columns {
    schema: SchemaRef,
    version: i32,
    fields: Vec<(String, Column)>,
    event_id: StringBuilder,
    row: Int32Builder,
    received_at: TimestampMicrosecondBuilder,
    schema_version: Int32Builder,
    len: usize,
}

impl Columns {
    pub(super) fn new(d: &Dataset, capacity: usize) -> Columns {
        Columns {
            schema: Arc::new(arrow_schema(d)),
            version: i32::try_from(d.version).unwrap_or(i32::MAX),
            fields: d
                .fields
                .iter()
                .map(|f| (f.name.clone(), Column::new(&f.kind, capacity)))
                .collect(),
            event_id: StringBuilder::with_capacity(capacity, capacity * 16),
            row: Int32Builder::with_capacity(capacity),
            received_at: TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC),
            schema_version: Int32Builder::with_capacity(capacity),
            len: 0,
        }
    }

    pub(super) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends one validated record (from `validate::record`), the `index`th of its request.
    pub(super) fn push(&mut self, record: &Value, stamp: &Stamp, index: usize) {
        for (name, column) in &mut self.fields {
            column.push(record.get(name.as_str()).unwrap_or(&Value::Null));
        }
        self.event_id.append_value(&stamp.event_id);
        self.row.append_option(i32::try_from(index).ok());
        self.received_at
            .append_value(stamp.received_at.as_microsecond());
        self.schema_version.append_value(self.version);
        self.len += 1;
    }

    /// The rows pushed since the last call, as one batch; the builders start empty again.
    pub(super) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut arrays = (self.fields.iter_mut())
            .map(|(_, c)| c.finish())
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        arrays.push(Arc::new(self.event_id.finish()));
        arrays.push(Arc::new(self.row.finish()));
        arrays.push(Arc::new(self.received_at.finish()));
        arrays.push(Arc::new(self.schema_version.finish()));
        self.len = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

/// The builder of one column, by the field's kind (the types of `super::arrow_type`).
enum Column {
    Text(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    Integer(Int64Builder),
    Number(Float64Builder),
    Boolean(BooleanBuilder),
    Object(Object),
    List(List),
}

struct Object {
    fields: Fields,
    children: Vec<(String, Column)>,
    nulls: NullBufferBuilder,
    len: usize,
}

struct List {
    item: FieldRef,
    offsets: OffsetBufferBuilder<i32>,
    items: Box<Column>,
    nulls: NullBufferBuilder,
}

impl Column {
    fn new(kind: &Kind, capacity: usize) -> Column {
        match kind {
            Kind::String(rule) => match rule.format {
                Some(Format::DateTime) => Column::Timestamp(
                    TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC),
                ),
                Some(Format::Date) => Column::Date(Date32Builder::with_capacity(capacity)),
                _ => Column::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            },
            Kind::Enum(_) => Column::Text(StringBuilder::with_capacity(capacity, capacity * 8)),
            Kind::Integer(_) => Column::Integer(Int64Builder::with_capacity(capacity)),
            Kind::Number(_) => Column::Number(Float64Builder::with_capacity(capacity)),
            Kind::Boolean => Column::Boolean(BooleanBuilder::with_capacity(capacity)),
            Kind::Object(fields) => Column::Object(Object {
                fields: fields.iter().map(arrow_field).collect(),
                children: fields
                    .iter()
                    .map(|f| (f.name.clone(), Column::new(&f.kind, capacity)))
                    .collect(),
                nulls: NullBufferBuilder::new(capacity),
                len: 0,
            }),
            Kind::Array { items, .. } => Column::List(List {
                item: list_item(items),
                offsets: OffsetBufferBuilder::new(capacity),
                items: Box::new(Column::new(items, capacity)),
                nulls: NullBufferBuilder::new(capacity),
            }),
        }
    }

    fn push(&mut self, v: &Value) {
        match self {
            Column::Text(b) => b.append_option(v.as_str()),
            Column::Timestamp(b) => b.append_option(timestamp(v)),
            Column::Date(b) => b.append_option(date(v)),
            Column::Integer(b) => b.append_option(v.as_i64()),
            Column::Number(b) => b.append_option(v.as_f64()),
            Column::Boolean(b) => b.append_option(v.as_bool()),
            Column::Object(o) => {
                let given = v.as_object();
                for (name, child) in &mut o.children {
                    let x = given.and_then(|m| m.get(name.as_str()));
                    child.push(x.unwrap_or(&Value::Null));
                }
                o.nulls.append(given.is_some());
                o.len += 1;
            }
            Column::List(l) => {
                let items = v.as_array().map_or(&[][..], Vec::as_slice);
                for x in items {
                    l.items.push(x);
                }
                l.offsets.push_length(items.len());
                l.nulls.append(v.is_array());
            }
        }
    }

    /// The values pushed since the last call; Arrow checks that a non-nullable child holds no
    /// null its parent does not.
    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Column::Text(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Integer(b) => Arc::new(b.finish()),
            Column::Number(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Object(o) => {
                let arrays = (o.children.iter_mut())
                    .map(|(_, c)| c.finish())
                    .collect::<Result<_, _>>()?;
                let len = std::mem::take(&mut o.len);
                let nulls = o.nulls.finish();
                Arc::new(StructArray::try_new_with_length(
                    o.fields.clone(),
                    arrays,
                    nulls,
                    len,
                )?)
            }
            Column::List(l) => {
                let offsets = std::mem::replace(&mut l.offsets, OffsetBufferBuilder::new(0));
                let items = l.items.finish()?;
                let nulls = l.nulls.finish();
                Arc::new(ListArray::try_new(
                    l.item.clone(),
                    offsets.finish(),
                    items,
                    nulls,
                )?)
            }
        })
    }
}

/// A date-time's UTC microseconds (validation admitted only RFC 3339 with an offset).
fn timestamp(v: &Value) -> Option<i64> {
    let t: jiff::Timestamp = v.as_str()?.parse().ok()?;
    Some(t.as_microsecond())
}

/// A date's days since 1970-01-01 (Arrow's `Date32`).
fn date(v: &Value) -> Option<i32> {
    let d: jiff::civil::Date = v.as_str()?.parse().ok()?;
    let days = jiff::civil::date(1970, 1, 1).until(d).ok()?.get_days();
    Some(days)
}
