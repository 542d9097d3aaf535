//! Rows the table already holds unchanged, left out before they are staged (a lookback
//! re-fetch, where most rows are). Before a batch of staged rows goes out, the table's rows with
//! the batch's keys are read back in binary form; a row whose compared fields (not the key, not
//! lineage) have the very bytes the table sends is not staged. Bytes equal means values equal
//! for every type sent in binary, so no change is ever left out; values equal in other bytes
//! (`1.0` and `1.00`) are staged, and the upsert's own test decides as before.
//!
//! The last line per key still wins: a row is left out only while no earlier row with its key
//! was staged, and a left-out row that a later staged row supersedes is counted as a
//! duplicate, as the upsert would count it. Where most rows are new or changed, the reading is
//! waste, so it is tried on a batch only after one where most rows were held, or after a
//! growing number of batches.
//!
//! Where the plan has a row hash (a `row_hash` column, [`UpsertPlan::row_hash`]), only the
//! key and the hash are read back and compared: the default then (`HELD_ROWS=auto`). Without
//! one it is opt-in (`HELD_ROWS=read_back`): reading every compared column back, on 100k
//! unchanged rows (`make bench-updates`, README), matches staging everything at best; the
//! loader waits on each read with nothing to overlap it. Each request's keys fit one TLS
//! record ([`REQUEST_KEY_BYTES`]): sqlx 0.9.0 leaves Nagle's algorithm on, and a 30 KB key
//! array sent as two records made the load three times slower (3.8 s against 1.3 s with
//! `TCP_NODELAY` set, README).

use std::collections::{HashMap, HashSet};

use sluice_transform::{
    BinaryRow, BinaryRows, ColumnType, CopyFormat, PlanColumn, UpsertPlan, quote_ident,
};
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{PgConnection, Row, ValueRef};

use crate::copy::key_hash;
use crate::error::{Error, Fail};

/// Rows left out because the table held them unchanged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// Rows whose key the table holds with the same compared values.
    pub unchanged: u64,
    /// Rows left out that a later row with the same key superseded.
    pub duplicates: u64,
}

impl Held {
    /// Rows not sent to Postgres.
    pub fn rows(&self) -> u64 {
        self.unchanged + self.duplicates
    }
}

/// Batches passed over at most between two reads when most rows were not held.
const MAX_GAP: u32 = 64;

/// Leaves out of staged batches (binary form, line number first) the rows the table holds.
#[derive(Debug)]
pub(crate) struct HeldRows {
    /// `SELECT key, compared… FROM table WHERE key = ANY($1)`, each cast to its type.
    select: String,
    /// Field of the key in a staged row.
    key_field: usize,
    /// Fields of the compared columns in a staged row, ascending (the select's order).
    compared: Vec<usize>,
    /// Hashes of the keys staged so far: a later row with one of them is staged too.
    staged: HashSet<u64>,
    /// Keys left out so far.
    left_out: HashSet<Box<[u8]>>,
    held: Held,
    /// Batches to pass over before the next read, and the gap after the last.
    skip: u32,
    gap: u32,
}

impl HeldRows {
    /// For a plan whose staged rows go in binary form with one text key, no CHECK constraint to
    /// evaluate on them, and no `jsonb` among the compared columns (Postgres sends `jsonb` in
    /// its own layout, never the bytes sluice sent). With a row hash, the hash is the one
    /// compared column.
    pub fn new(plan: &UpsertPlan, staging: &CopyFormat, checked: bool) -> Option<Self> {
        let ([key], CopyFormat::Binary(_), false) = (plan.key.as_slice(), staging, checked) else {
            return None;
        };
        if !plan.text_key() {
            return None;
        }
        let key_field = 1 + plan.columns.iter().position(|c| &c.name == key)?;
        // Each column cast to its type (the table's own, or binary would not be chosen): the
        // statement stays prepared on the connection, and a column widened since then makes
        // another statement instead of a cached plan whose result type changed.
        let cast = |c: &PlanColumn| format!("{}::{}", quote_ident(&c.name), c.ty.sql());
        let mut names = vec![format!("{}::text", quote_ident(key))];
        let mut compared = Vec::new();
        let unchanged_by = plan.unchanged_by();
        for (i, c) in plan.columns.iter().enumerate() {
            if !unchanged_by.iter().any(|u| u.name == c.name) {
                continue;
            }
            if c.ty == ColumnType::Jsonb {
                return None;
            }
            names.push(cast(c));
            compared.push(i + 1);
        }
        let select = format!(
            "SELECT {} FROM {} WHERE {} = ANY($1)",
            names.join(", "),
            plan.table.quoted(),
            quote_ident(key)
        );
        Some(Self {
            select,
            key_field,
            compared,
            staged: HashSet::new(),
            left_out: HashSet::new(),
            held: Held::default(),
            skip: 0,
            gap: 0,
        })
    }

    /// What was left out so far.
    pub fn held(&self) -> Held {
        self.held
    }

    /// Whether the next batch is read back (else [`note`](Self::note) it).
    pub fn reads_next(&self) -> bool {
        self.skip == 0
    }

    /// A batch staged whole: its keys are staged.
    pub fn note(&mut self, rows: &[u8]) -> Result<(), Fail> {
        self.skip = self.skip.saturating_sub(1);
        for row in read_all(rows)? {
            let key = self.key(&row);
            self.stage(key);
        }
        Ok(())
    }

    /// Reads back the table's rows with the batch's keys and removes from `rows` those it
    /// holds unchanged.
    pub async fn filter(
        &mut self,
        conn: &mut PgConnection,
        rows: &mut Vec<u8>,
    ) -> Result<(), Fail> {
        let parsed = read_all(rows)?;
        let same = self.same_in_table(conn, &parsed).await?;
        let mut keep = Vec::with_capacity(parsed.len());
        let before = self.held.rows();
        for (row, same) in parsed.iter().zip(&same) {
            let key = self.key(row);
            let staged_before = !self.staged.is_empty() && self.staged.contains(&key_hash(key));
            let kept = !*same || staged_before;
            keep.push(kept);
            if kept {
                self.stage(key);
            } else if self.left_out.contains(key) {
                self.held.duplicates += 1;
            } else {
                self.held.unchanged += 1;
                self.left_out.insert(key.into());
            }
        }
        let spans: Vec<(usize, usize)> = parsed
            .iter()
            .map(|r| (r.offset, r.as_bytes().len()))
            .collect();
        let left = self.held.rows() - before;
        self.after(left, spans.len() as u64);
        compact(rows, &spans, &keep);
        Ok(())
    }

    /// For each row, whether the table holds its key with the same compared fields.
    async fn same_in_table(
        &self,
        conn: &mut PgConnection,
        rows: &[BinaryRow<'_>],
    ) -> Result<Vec<bool>, Fail> {
        // Each key's rows in the batch: the first, and a chain through the rest.
        let mut first: HashMap<&[u8], usize> = HashMap::with_capacity(rows.len());
        let mut next = vec![usize::MAX; rows.len()];
        let mut keys: Vec<&str> = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let key = self.key(row);
            if let Some(prev) = first.insert(key, i) {
                next[i] = prev;
            } else if let Ok(k) = std::str::from_utf8(key) {
                keys.push(k);
            }
        }
        let mut found = Vec::new();
        for part in requests(&keys, REQUEST_KEY_BYTES) {
            let rows = sqlx::query(sqlx::AssertSqlSafe(self.select.as_str()))
                .bind(part)
                .fetch_all(&mut *conn)
                .await?;
            found.extend(rows);
        }
        let mut same = vec![false; rows.len()];
        for t in &found {
            let Sent::Binary(key) = raw(t, 0)? else {
                continue;
            };
            let mut i = first.get(key).copied().unwrap_or(usize::MAX);
            while i != usize::MAX {
                same[i] = self.equal(&rows[i], t)?;
                i = next[i];
            }
        }
        Ok(same)
    }

    /// Whether a staged row's compared fields are the table row's bytes.
    fn equal(&self, row: &BinaryRow<'_>, table: &PgRow) -> Result<bool, Fail> {
        let mut j = 0;
        for (field, ours) in row.fields().enumerate() {
            if self.compared.get(j) != Some(&field) {
                continue;
            }
            let same = match (raw(table, j + 1)?, ours) {
                (Sent::Null, None) => true,
                (Sent::Binary(theirs), Some(ours)) => theirs == ours,
                _ => false,
            };
            if !same {
                return Ok(false);
            }
            j += 1;
        }
        Ok(j == self.compared.len())
    }

    fn key<'a>(&self, row: &BinaryRow<'a>) -> &'a [u8] {
        row.fields()
            .nth(self.key_field)
            .flatten()
            .unwrap_or_default()
    }

    /// A row with `key` is staged: a later one left out before is a duplicate now.
    fn stage(&mut self, key: &[u8]) {
        self.staged.insert(key_hash(key));
        if !self.left_out.is_empty() && self.left_out.remove(key) {
            self.held.unchanged -= 1;
            self.held.duplicates += 1;
        }
    }

    /// After a read that left out `left` of `rows`: read the next batch too when most were
    /// held, else pass over a gap that doubles each time (8, 16, … [`MAX_GAP`]).
    fn after(&mut self, left: u64, rows: u64) {
        if left * 2 > rows {
            self.gap = 0;
        } else {
            self.gap = (self.gap * 2).clamp(8, MAX_GAP);
        }
        self.skip = self.gap;
    }
}

/// Every row of a batch, or an error if the batch does not end on a row's end (it always does:
/// the producer wrote it).
fn read_all(rows: &[u8]) -> Result<Vec<BinaryRow<'_>>, Fail> {
    let mut read = BinaryRows::new(rows);
    let parsed: Vec<BinaryRow<'_>> = read.by_ref().collect();
    if read.rest() != 0 {
        return Err(Fail::Permanent(Error::Reader(format!(
            "a batch of staged rows ends in {} bytes that are not a whole row",
            read.rest()
        ))));
    }
    Ok(parsed)
}

/// A column of a row the table sent.
#[derive(Debug, PartialEq, Eq)]
enum Sent<'a> {
    Null,
    Binary(&'a [u8]),
    /// In text form: never the bytes of a staged binary row.
    Text,
}

fn raw(row: &PgRow, col: usize) -> Result<Sent<'_>, Fail> {
    let value = row.try_get_raw(col)?;
    if value.is_null() {
        return Ok(Sent::Null);
    }
    if value.format() != PgValueFormat::Binary {
        return Ok(Sent::Text);
    }
    let bytes = value
        .as_bytes()
        .map_err(|e| Fail::Permanent(Error::Reader(format!("reading back a table row: {e}"))))?;
    Ok(Sent::Binary(bytes))
}

/// The key bytes one read-back request carries at most: with the statement's framing, the
/// request stays under one TLS record (16 KiB), so it leaves in one write. sqlx 0.9.0 leaves
/// Nagle's algorithm on, and a request written as two records waited for the server's delayed
/// ACK, about 40 ms, on every batch.
const REQUEST_KEY_BYTES: usize = 12 * 1024;

/// `keys` in consecutive parts of at most `budget` bytes (a key counts its 4-byte length as an
/// array element); a key longer than the budget is a part alone.
fn requests<'a, 'k>(keys: &'a [&'k str], budget: usize) -> impl Iterator<Item = &'a [&'k str]> {
    let mut rest = keys;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|k| {
                bytes += k.len() + 4;
                bytes <= budget
            })
            .count()
            .max(1);
        let (part, tail) = rest.split_at(n);
        rest = tail;
        Some(part)
    })
}

/// Keeps the rows (`(offset, length)` spans, in order) whose `keep` is true, in place.
fn compact(rows: &mut Vec<u8>, spans: &[(usize, usize)], keep: &[bool]) {
    let mut to = 0;
    for (&(from, len), _) in spans.iter().zip(keep).filter(|(_, k)| **k) {
        rows.copy_within(from..from + len, to);
        to += len;
    }
    rows.truncate(to);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_split_keys_in_order_under_the_budget() {
        let keys = ["aaaa", "bb", "cccccccccccc", "d", "ee"];
        let parts: Vec<&[&str]> = requests(&keys, 14).collect();
        // 8 + 6 bytes fit 14; the 16-byte key goes alone; 5 + 6 fit.
        assert_eq!(
            parts,
            [&["aaaa", "bb"][..], &["cccccccccccc"], &["d", "ee"]]
        );
        assert_eq!(requests(&[], 14).count(), 0);
        assert_eq!(requests(&keys, 1 << 20).count(), 1);
    }

    #[test]
    fn compact_keeps_the_kept_rows_in_order() {
        let mut rows = b"aaBBBcDD".to_vec();
        compact(
            &mut rows,
            &[(0, 2), (2, 3), (5, 1), (6, 2)],
            &[false, true, false, true],
        );
        assert_eq!(rows, b"BBBDD");
    }

    #[test]
    fn reads_resume_after_growing_gaps_and_at_once_after_a_held_batch() {
        let plan = UpsertPlan::new(
            sluice_transform::TableRef::new("public", "t"),
            vec![
                sluice_transform::PlanColumn::new("id", ColumnType::Text),
                sluice_transform::PlanColumn::new("v", ColumnType::Integer),
            ],
            vec!["id".into()],
            None,
        )
        .unwrap();
        let binary = plan.copy_format().numbered();
        let mut h = HeldRows::new(&plan, &binary, false).unwrap();
        assert!(h.reads_next());
        h.after(0, 10);
        assert_eq!(h.skip, 8);
        for _ in 0..8 {
            assert!(!h.reads_next());
            h.note(&[]).unwrap();
        }
        assert!(h.reads_next());
        h.after(5, 10);
        assert_eq!(h.skip, 16);
        h.skip = 0;
        h.after(6, 10);
        assert!(h.reads_next());
        assert!(HeldRows::new(&plan, &binary, true).is_none());
        assert!(HeldRows::new(&plan, &CopyFormat::Text, false).is_none());
    }
}
