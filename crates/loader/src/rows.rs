//! The pure half of a load: CSV records in, typed rows or rejected rows out. No database, no
//! store: the tests below drive it with bytes.

use std::io;

use sluice_flatten::csv::{CsvReader, CsvRecord};
use sluice_transform::{BoundMapping, RowContext, TypedRow};

use crate::error::{Error, Fail, Reject, Rejection};
use crate::store::{ObjectReader, decode};

/// What a row must satisfy, resolved against one file's header and the table.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub header: Vec<String>,
    pub bound: BoundMapping,
    /// freeze: CSV columns the table lacks (position, target name); their values are refused.
    pub frozen: Vec<(usize, String)>,
    /// Target columns whose types were guessed from the first rows.
    pub guessed: Vec<String>,
    /// The table's CHECK constraints (name, expression): rows are staged, and those that
    /// violate one are taken out before the upsert.
    pub checks: Vec<(String, String)>,
    pub ctx: RowContext,
}

/// One record, produced.
#[derive(Debug)]
pub(crate) enum Produced<'a> {
    /// A row to load, and the line it starts on.
    Typed { line: u64, row: &'a TypedRow },
    /// A row to quarantine: why, and its fields as read.
    Rejected {
        rejection: Rejection,
        record: &'a CsvRecord,
    },
}

/// Typed rows from a CSV stream whose header has been read.
#[derive(Debug)]
pub(crate) struct Rows<R: io::Read = ObjectReader> {
    reader: CsvReader<R>,
    rules: Rules,
    record: CsvRecord,
    typed: TypedRow,
    /// Records read so far (the header not counted).
    pub read: u64,
}

impl<R: io::Read> Rows<R> {
    pub fn new(reader: CsvReader<R>, rules: Rules) -> Self {
        Self {
            reader,
            rules,
            record: CsvRecord::default(),
            typed: TypedRow::default(),
            read: 0,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The next record as a typed or a rejected row; `None` at the end. Fails on bytes that
    /// cannot be read, and with [`Fail::Reinfer`] when a value does not fit a guessed type.
    pub fn next(&mut self) -> Result<Option<Produced<'_>>, Fail> {
        if !self.reader.read(&mut self.record)? {
            return Ok(None);
        }
        self.read += 1;
        let line = self.record.line;
        Ok(Some(match self.check()? {
            Ok(()) => Produced::Typed {
                line,
                row: &self.typed,
            },
            Err(reason) => Produced::Rejected {
                rejection: Rejection { line, reason },
                record: &self.record,
            },
        }))
    }

    /// The current record against the rules: `Ok(Err(_))` for a row to reject.
    fn check(&mut self) -> Result<Result<(), Reject>, Error> {
        let rules = &self.rules;
        let width = rules.header.len();
        let fields: Vec<Option<&[u8]>> = self.record.iter().collect();
        if fields.len() != width {
            return Ok(Err(if fields.len() == 1 && fields[0].is_none() {
                Reject::Blank { width }
            } else {
                Reject::Ragged {
                    fields: fields.len(),
                    width,
                }
            }));
        }
        if let Some((_, name)) = rules.frozen.iter().find(|(c, _)| fields[*c].is_some()) {
            return Ok(Err(Reject::Frozen {
                column: name.clone(),
            }));
        }
        match rules.bound.apply(&fields, &rules.ctx, &mut self.typed) {
            Ok(()) => Ok(Ok(())),
            // Not a bad row but a wrong guess: the caller infers again from the whole object.
            Err(e) if e.value.is_some() && rules.guessed.contains(&e.column) => Err(Error::Guess {
                line: self.record.line,
                source: e,
            }),
            Err(e) => Ok(Err(Reject::Value(e))),
        }
    }
}

/// Reads and checks the header; `None` for an empty object.
pub(crate) fn read_header(
    raw: Box<dyn io::Read + Send>,
) -> Result<(CsvReader<ObjectReader>, Option<Vec<String>>), Error> {
    let mut reader = CsvReader::new(decode(raw)?);
    let mut rec = CsvRecord::default();
    if !reader.read(&mut rec)? {
        return Ok((reader, None));
    }
    Ok((reader, Some(header_names(&rec)?)))
}

fn header_names(rec: &CsvRecord) -> Result<Vec<String>, Error> {
    let not_csv = |why: String| Error::NotCsv(why);
    let first = rec.get(0).unwrap_or_default();
    if rec.iter().flatten().any(|f| f.contains(&0)) {
        return Err(not_csv(
            "the header contains NUL bytes (binary data?)".into(),
        ));
    }
    if rec.len() == 1 && first.is_empty() {
        return Err(not_csv("line 1 (the header) is blank".into()));
    }
    if matches!(first.trim_ascii_start().first(), Some(b'{' | b'[')) {
        return Err(not_csv(
            "it looks like JSON (line 1 starts with '{' or '[')".into(),
        ));
    }
    let mut header = Vec::with_capacity(rec.len());
    for (i, f) in rec.iter().enumerate() {
        let name = std::str::from_utf8(f.unwrap_or_default()).map_err(|e| {
            not_csv(format!(
                "header column {} is not UTF-8 (byte {})",
                i + 1,
                e.valid_up_to()
            ))
        })?;
        if name.is_empty() {
            return Err(Error::Header(format!("column {} has no name", i + 1)));
        }
        if header.iter().any(|h: &String| h == name) {
            return Err(Error::Header(format!("column {name:?} appears twice")));
        }
        header.push(name.to_owned());
    }
    Ok(header)
}

/// The header for error messages: at most 200 characters.
pub(crate) fn header_preview(header: &[String]) -> String {
    let mut s = header.join(",");
    if s.chars().count() > 200 {
        s = s.chars().take(200).collect::<String>() + "…";
    }
    s
}

#[cfg(test)]
mod tests {
    use sluice_transform::{ColumnType, Mapping, TableRef};

    use super::*;

    /// Rows of `csv` under a mapping keyed on `id`, with `types` for the header's columns and
    /// `guessed` columns.
    fn rows(csv: &str, types: &[ColumnType], guessed: &[&str]) -> Rows<io::Cursor<Vec<u8>>> {
        let mut reader = CsvReader::new(io::Cursor::new(csv.as_bytes().to_vec()));
        let mut rec = CsvRecord::default();
        reader.read(&mut rec).unwrap();
        let header = header_names(&rec).unwrap();
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        let mapping = Mapping::inferred(TableRef::new("public", "t"), vec!["id".into()], None);
        let rules = Rules {
            checks: Vec::new(),
            bound: mapping.bind(&names, types).unwrap(),
            header,
            frozen: Vec::new(),
            guessed: guessed.iter().map(|g| g.to_string()).collect(),
            ctx: RowContext::now(),
        };
        Rows::new(reader, rules)
    }

    /// Each record as `Ok(values)` or `Err("line N: reason")`.
    fn produce(rows: &mut Rows<io::Cursor<Vec<u8>>>) -> Vec<Result<Vec<Option<String>>, String>> {
        let mut out = Vec::new();
        while let Some(p) = rows.next().unwrap() {
            out.push(match p {
                Produced::Typed { row, .. } => {
                    Ok(row.iter().map(|v| v.map(str::to_owned)).collect())
                }
                Produced::Rejected { rejection, .. } => Err(rejection.to_string()),
            });
        }
        out
    }

    const TEXT_INT: [ColumnType; 2] = [ColumnType::Text, ColumnType::Bigint];

    #[test]
    fn good_rows_are_typed_and_bad_ones_say_line_and_column() {
        let mut r = rows("id,n\na,1\nb,x\n\nc\nd,\n", &TEXT_INT, &[]);
        let got = produce(&mut r);
        assert_eq!(got[0], Ok(vec![Some("a".into()), Some("1".into())]));
        let bad = got[1].as_ref().unwrap_err();
        assert!(bad.starts_with("line 3: column \"n\""), "{bad}");
        assert!(bad.contains("(value \"x\")"), "{bad}");
        assert_eq!(
            got[2],
            Err("line 4: blank line (the header has 2 columns)".into())
        );
        assert_eq!(
            got[3],
            Err("line 5: row has 1 fields, the header has 2".into())
        );
        assert_eq!(got[4], Ok(vec![Some("d".into()), None]));
        assert_eq!(r.read, 5);
    }

    #[test]
    fn a_value_that_misfits_a_guessed_type_asks_for_whole_object_inference() {
        let mut r = rows("id,n\na,1\nb,n/a\n", &TEXT_INT, &["n"]);
        assert!(matches!(
            r.next(),
            Ok(Some(Produced::Typed { line: 2, .. }))
        ));
        match r.next() {
            Err(Fail::Reinfer(Error::Guess { line, source })) => {
                assert_eq!((line, source.column.as_str()), (3, "n"));
            }
            other => panic!("expected a re-inference, got {other:?}"),
        }
    }

    #[test]
    fn frozen_columns_refuse_values_but_not_nulls() {
        let mut r = rows("id,n\na,\nb,2\n", &TEXT_INT, &[]);
        r.rules.frozen = vec![(1, "n".into())];
        let got = produce(&mut r);
        assert!(got[0].is_ok());
        assert_eq!(
            got[1],
            Err("line 3: column \"n\" has a value but is not in the table (schema_policy = \"freeze\")".into())
        );
    }

    #[test]
    fn headers_that_are_not_csv_are_named() {
        let header = |csv: &str| {
            read_header(Box::new(io::Cursor::new(csv.as_bytes().to_vec())))
                .map(|(_, h)| h)
                .map_err(|e| e.to_string())
        };
        assert_eq!(header(""), Ok(None));
        assert_eq!(header("a,b\n1,2\n"), Ok(Some(vec!["a".into(), "b".into()])));
        assert_eq!(
            header("\n1\n"),
            Err("not a CSV file: line 1 (the header) is blank".into())
        );
        assert!(
            header("{\"a\": 1}\n")
                .unwrap_err()
                .contains("looks like JSON")
        );
        assert_eq!(
            header("a,,b\n"),
            Err("bad header: column 2 has no name".into())
        );
        assert_eq!(
            header("a,b,a\n"),
            Err("bad header: column \"a\" appears twice".into())
        );
    }
}
