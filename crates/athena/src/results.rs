//! Reading a query's results: every page, the header row dropped where Athena puts it, values
//! typed from the column types.

use aws_sdk_athena::error::DisplayErrorContext;
use aws_sdk_athena::types::StatementType;
use serde_json::Value;

use crate::{Athena, AthenaError};

/// Rows a page: `GetQueryResults`' maximum.
const PAGE_ROWS: i32 = 1000;

/// A result column: its name and Athena type (`varchar`, `bigint`, `timestamp`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub athena_type: String,
}

/// A query's results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub query_id: String,
    pub columns: Vec<Column>,
    /// One value per column: typed by [`typed`].
    pub rows: Vec<Vec<Value>>,
    /// `Statistics.DataScannedInBytes`.
    pub bytes_scanned: Option<i64>,
    /// Athena answered with an earlier run's results (result reuse).
    pub reused: bool,
}

/// A cell as JSON, typed by its column's Athena type: integers as numbers, `double`/`real` as
/// numbers when finite, `boolean` as a boolean, NULL (no `VarCharValue`) as null, and everything
/// else, `decimal` included (its digits kept exact), as text.
///
/// ```
/// use serde_json::json;
/// use sluice_athena::typed;
///
/// assert_eq!(typed("bigint", Some("9007199254740993")), json!(9007199254740993_i64));
/// assert_eq!(typed("double", Some("1.5")), json!(1.5));
/// assert_eq!(typed("decimal", Some("0.10")), json!("0.10"));
/// assert_eq!(typed("boolean", Some("true")), json!(true));
/// assert_eq!(typed("varchar", None), json!(null));
/// assert_eq!(typed("double", Some("NaN")), json!("NaN"));
/// ```
pub fn typed(athena_type: &str, text: Option<&str>) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    let base = athena_type
        .split(['(', '<'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let parsed = match base.as_str() {
        "tinyint" | "smallint" | "integer" | "int" | "bigint" => {
            text.parse::<i64>().ok().map(Value::from)
        }
        "double" | "float" | "real" => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        "boolean" => text.parse::<bool>().ok().map(Value::Bool),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(text.to_owned()))
}

impl Athena {
    /// Every page of a finished query's results.
    pub(crate) async fn results(
        &self,
        query_id: &str,
        statement_type: Option<&StatementType>,
    ) -> Result<Rows, AthenaError> {
        let failed = |message: String| AthenaError::Results {
            query_id: query_id.to_owned(),
            message,
        };
        let mut out = Rows::default();
        let mut token: Option<String> = None;
        let mut first_page = true;
        loop {
            let page = self
                .client
                .get_query_results()
                .query_execution_id(query_id)
                .max_results(PAGE_ROWS)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| failed(DisplayErrorContext(&e).to_string()))?;
            let set = page.result_set;
            if first_page {
                out.columns = set
                    .as_ref()
                    .and_then(|s| s.result_set_metadata.as_ref())
                    .map(|m| {
                        m.column_info()
                            .iter()
                            .map(|c| Column {
                                name: c.name.clone(),
                                athena_type: c.r#type.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
            let rows = set.map(|s| s.rows.unwrap_or_default()).unwrap_or_default();
            // A SELECT's first page starts with the column names; no other page, and no other
            // statement's results, do.
            let skip = usize::from(first_page && statement_type == Some(&StatementType::Dml));
            for row in rows.iter().skip(skip) {
                let data = row.data();
                if data.len() != out.columns.len() {
                    return Err(failed(format!(
                        "a row of {} values for {} columns",
                        data.len(),
                        out.columns.len()
                    )));
                }
                out.rows.push(
                    out.columns
                        .iter()
                        .zip(data)
                        .map(|(c, d)| typed(&c.athena_type, d.var_char_value()))
                        .collect(),
                );
            }
            first_page = false;
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}
