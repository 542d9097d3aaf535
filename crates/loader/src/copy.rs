//! The `COPY` protocol of one attempt: a blocking producer reads, transforms and batches rows;
//! the async side streams the batches into Postgres, straight into the table (`direct`) or into
//! a staging table.
//!
//! The path is decided by the first batch. While it is undecided the producer writes each row in
//! both forms (table and staging), keeps the first keys, and watches for a repeated key; the
//! async side probes those keys against the table. A repeat or an existing key turns the load
//! to staging without a second read. After that, a repeat meets the unique index: a unique
//! violation that the caller answers by rolling back and staging ([`Fail::Stage`]).
//!
//! Where the probe finds keys the table holds, and the table's greatest key is known in byte
//! order (its collation orders text as bytes do), the load can split instead of staging: if
//! most keys of the first batch are above the greatest, the first batch is staged, and after it
//! a row whose key is above the greatest goes straight into the table (it cannot be there),
//! the others are kept in staging form and staged after the direct rows.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::mpsc as sync_mpsc;

use sluice_transform::{
    CopyFormat, CopyRows, EncodeError, LINE_COLUMN, TypedRow, UpsertPlan, quote_ident,
};
use sqlx::PgConnection;
use sqlx::postgres::PgCopyIn;
use tokio::sync::mpsc;

use crate::config::{HeldRowsMode, SendFormat};
use crate::error::{Error, Fail};
use crate::held::{Held, HeldRows};
use crate::quarantine::{Quarantine, Quarantined};
use crate::rows::{Produced, Rows};
use crate::summary::LoadPath;

/// Staging table name (temporary, dropped at commit).
pub(crate) const STAGE: &str = "sluice_stage";
/// Keys of the first rows checked against the table before a direct `COPY`.
const PROBE_KEYS: usize = 1000;
/// A split load keeps at most this many batches of rows in staging form; past that, the rest
/// of the object goes to staging as it comes (bounded memory, no second read).
const SIDE_BATCHES: usize = 32;

/// How an attempt starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Every row into the staging table.
    Staged,
    /// Straight into the table unless the first batch repeats a key or names one the table
    /// holds (a probe). Then staged, or split on `ceiling`, the table's greatest key in byte
    /// order, when one is known.
    Direct { ceiling: Option<String> },
}

/// A direct attempt, with the table's greatest key when its collation orders text as bytes do
/// (the caller decides whether a direct `COPY` may be tried at all).
pub(crate) async fn direct_attempt(
    conn: &mut PgConnection,
    plan: &UpsertPlan,
) -> Result<Attempt, Fail> {
    let (Some(sql), [key]) = (plan.key_ceiling(), plan.key.as_slice()) else {
        return Ok(Attempt::Direct { ceiling: None });
    };
    // Kept prepared: its result's collation is fixed, so a collation changed by `ALTER TABLE`
    // re-plans it instead of failing the cached plan ("must not change result type").
    let (ceiling, byte_order): (Option<String>, Option<bool>) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(plan.table.quoted())
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
    Ok(Attempt::Direct {
        ceiling: ceiling.filter(|_| byte_order == Some(true)),
    })
}

/// How rows are sent (from the configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyOptions {
    pub batch_bytes: usize,
    pub format: SendFormat,
    pub held_rows: HeldRowsMode,
}

/// What the `COPY` took.
#[derive(Debug)]
pub(crate) struct Copied {
    pub path: LoadPath,
    pub rows_read: u64,
    /// Rows sent (to the table or to staging).
    pub sent: u64,
    /// Of those, rows `COPY`ed straight into the table (as Postgres counted them).
    pub direct: u64,
    pub keys: KeyOrder,
    pub quarantined: Quarantined,
    /// Rows not sent: the table held them unchanged.
    pub held: Held,
}

/// The format of each target's rows.
#[derive(Debug, Clone)]
struct Formats {
    table: CopyFormat,
    /// The table's, with the line number first.
    staging: CopyFormat,
}

impl Formats {
    /// Binary when asked for and the plan's columns allow it, on Postgres 14 or later (whose
    /// binary `numeric` has the infinities); else text.
    fn new(plan: &UpsertPlan, wanted: SendFormat, server_version: Option<u32>) -> Self {
        let table = match wanted {
            SendFormat::Binary if server_version.is_some_and(|v| v >= 140_000) => {
                plan.copy_format()
            }
            _ => CopyFormat::Text,
        };
        Self {
            staging: table.numbered(),
            table,
        }
    }

    fn of(&self, target: Target) -> &CopyFormat {
        match target {
            Target::Table => &self.table,
            Target::Stage => &self.staging,
        }
    }
}

/// Streams `rows` into Postgres as `attempt` says: straight into the table, into the staging
/// table, or split between them, in the format `format` asks for where the columns allow it.
pub(crate) async fn copy_rows(
    conn: &mut PgConnection,
    rows: Rows,
    attempt: Attempt,
    options: CopyOptions,
) -> Result<Copied, Fail> {
    let CopyOptions {
        batch_bytes,
        format,
        held_rows,
    } = options;
    let plan = rows.rules().bound.plan().clone();
    let formats = Formats::new(&plan, format, conn.server_version_num());
    let checked = !rows.rules().checks.is_empty();
    let held = match held_rows {
        HeldRowsMode::ReadBack => HeldRows::new(&plan, &formats.staging, checked),
        HeldRowsMode::Auto if plan.row_hash.is_some() => {
            HeldRows::new(&plan, &formats.staging, checked)
        }
        HeldRowsMode::Auto | HeldRowsMode::Stage => None,
    };
    let (tx, mut rx) = mpsc::channel::<Batch>(4);
    let (decide_tx, decide_rx) = sync_mpsc::sync_channel::<bool>(1);
    let producer = Producer::new(&rows, attempt, batch_bytes, formats.clone(), tx, decide_rx);
    let parser = tokio::task::spawn_blocking(move || producer.run(rows));
    let Some(mut first) = rx.recv().await else {
        // No row to send (none, or all rejected): nothing to COPY either way. Reported as
        // direct: no staging table, no upsert, nothing inserted.
        let produced = join(parser).await?;
        return Ok(produced.copied(LoadPath::Direct, 0, Held::default()));
    };
    // The probe's answer decides, also for a first batch that was the producer's last.
    decide(conn, &plan, &mut first, &decide_tx).await?;
    let to = Targets {
        plan: &plan,
        formats: &formats,
        batch_bytes,
    };
    stream(conn, to, held, first, rx, parser).await
}

/// An undecided first batch is probed against the table, and becomes direct or staged.
async fn decide(
    conn: &mut PgConnection,
    plan: &UpsertPlan,
    first: &mut Batch,
    decide_tx: &sync_mpsc::SyncSender<bool>,
) -> Result<(), Fail> {
    let (staged_rows, keys) = match std::mem::replace(&mut first.path, BatchPath::Staged) {
        BatchPath::Undecided { staged_rows, keys } => (staged_rows, keys),
        decided => {
            first.path = decided;
            return Ok(());
        }
    };
    let mut exists = false;
    if let [key] = plan.key.as_slice()
        && !keys.is_empty()
    {
        exists = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} = ANY($1))",
            plan.table.quoted(),
            quote_ident(key)
        )))
        .bind(&keys)
        .fetch_one(&mut *conn)
        .await?;
    }
    if exists {
        first.rows = staged_rows;
    } else {
        first.path = BatchPath::Direct;
    }
    // The producer waits for this after a full first batch (not after its last).
    let _ = decide_tx.try_send(!exists);
    Ok(())
}

/// What a `COPY` needs to know of its targets.
#[derive(Clone, Copy)]
struct Targets<'a> {
    plan: &'a UpsertPlan,
    formats: &'a Formats,
    batch_bytes: usize,
}

/// Sends the batches as they come, each to its target, one `COPY` per run of batches with the
/// same target (a split stages its first batch, sends its direct rows, then stages the rest).
/// A staged batch due for a read-back ([`HeldRows`]) is read back while no `COPY` is open; the
/// rows it leaves are kept until a batch's worth is gathered (or another target comes, or the
/// end), so that a re-fetch with a few changed rows per batch does not open a small `COPY` per
/// batch. Ends the last `COPY` in step with the producer's outcome, and names the path the
/// rows took.
async fn stream(
    conn: &mut PgConnection,
    to: Targets<'_>,
    mut held: Option<HeldRows>,
    first: Batch,
    mut rx: mpsc::Receiver<Batch>,
    parser: tokio::task::JoinHandle<Result<Produce, Fail>>,
) -> Result<Copied, Fail> {
    let mut sink = Sink::default();
    let mut next = Some(first);
    // Staged rows left by read-backs, not sent yet, in the order they came.
    let mut kept: Vec<u8> = Vec::new();
    loop {
        let mut batch = match next.take() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(b) => b,
                None if kept.is_empty() => return ended(None, &mut sink, held, parser).await,
                None => staged(std::mem::take(&mut kept)),
            },
        };
        let staged_batch = batch.path.target() == Target::Stage;
        match held.as_mut() {
            Some(h) if staged_batch && h.reads_next() => {
                if let Err(e) = h.filter(conn, &mut batch.rows).await {
                    return Err(stop(rx, parser, e).await);
                }
                kept.extend_from_slice(&batch.rows);
                if kept.len() < to.batch_bytes {
                    continue;
                }
                batch = staged(std::mem::take(&mut kept));
            }
            Some(h) if staged_batch => {
                if let Err(e) = h.note(&batch.rows) {
                    return Err(stop(rx, parser, e).await);
                }
                if !kept.is_empty() {
                    kept.extend_from_slice(&batch.rows);
                    batch = staged(std::mem::take(&mut kept));
                }
            }
            _ if !kept.is_empty() => {
                // Another target: the kept rows go first.
                next = Some(batch);
                batch = staged(std::mem::take(&mut kept));
            }
            _ => {}
        }
        if batch.rows.is_empty() {
            continue;
        }
        match run(conn, to, &mut sink, &mut held, batch, &mut next, &mut rx).await {
            Run::Next(b) => next = Some(b),
            Run::End(copy, target) => {
                return ended(Some((copy, target)), &mut sink, held, parser).await;
            }
            Run::Failed(f) => return Err(stop(rx, parser, f).await),
        }
    }
}

/// Rows already checked, to be staged.
fn staged(rows: Vec<u8>) -> Batch {
    Batch {
        rows,
        path: BatchPath::Staged,
    }
}

/// How a run of batches into one `COPY` ended.
enum Run<'c> {
    /// The `COPY` is finished; this batch goes to another target, or is read back first.
    Next(Batch),
    /// The producer is done: the `COPY` into this target is still open.
    End(PgCopyIn<&'c mut PgConnection>, Target),
    Failed(Fail),
}

/// Opens a `COPY` into `batch`'s target and sends it (with the format's header, in one
/// message: a header alone would wait out TCP's delayed ACK), then the batches after it
/// (`next` first) that go to the same target and need no read-back (their keys noted as
/// staged).
async fn run<'c>(
    conn: &'c mut PgConnection,
    to: Targets<'_>,
    sink: &mut Sink,
    held: &mut Option<HeldRows>,
    batch: Batch,
    next: &mut Option<Batch>,
    rx: &mut mpsc::Receiver<Batch>,
) -> Run<'c> {
    let target = batch.path.target();
    let mut copy = match sink.open(conn, to.plan, to.formats, target).await {
        Ok(c) => c,
        Err(e) => return Run::Failed(e.into()),
    };
    let header = to.formats.of(target).header();
    let mut rows = if header.is_empty() {
        batch.rows
    } else {
        [header, &batch.rows].concat()
    };
    loop {
        if let Err(e) = copy.send(rows).await {
            return Run::Failed(e.into());
        }
        let b = match next.take() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(b) => b,
                None => return Run::End(copy, target),
            },
        };
        let staged = b.path.target() == Target::Stage;
        let read_back = staged && held.as_ref().is_some_and(HeldRows::reads_next);
        if b.path.target() != target || read_back {
            return match copy.finish().await {
                Ok(n) => {
                    sink.count(target, n);
                    Run::Next(b)
                }
                Err(e) => Run::Failed(e.into()),
            };
        }
        if let Some(h) = held.as_mut().filter(|_| staged)
            && let Err(e) = h.note(&b.rows)
        {
            let _ = copy.abort(e.error().to_string()).await;
            return Run::Failed(e);
        }
        rows = b.rows;
    }
}

/// After the producer's last batch: its outcome, and the open `COPY` (if any) ended in step
/// with it.
async fn ended(
    copy: Option<(PgCopyIn<&mut PgConnection>, Target)>,
    sink: &mut Sink,
    held: Option<HeldRows>,
    parser: tokio::task::JoinHandle<Result<Produce, Fail>>,
) -> Result<Copied, Fail> {
    match (join(parser).await, copy) {
        (Ok(p), copy) => {
            if let Some((copy, target)) = copy {
                sink.count(target, copy.finish().await?);
            }
            let held = held.map(|h| h.held()).unwrap_or_default();
            debug_assert_eq!(sink.direct + sink.staged + held.rows(), p.sent);
            let path = sink.path(held.rows() > 0);
            Ok(p.copied(path, sink.direct, held))
        }
        (Err(f), Some((copy, _))) => {
            if matches!(f, Fail::Stage(_)) {
                // Ending the COPY normally keeps the protocol in step whatever the server
                // already said (a unique violation, say); the savepoint undoes it anyway.
                let _ = copy.finish().await;
            } else {
                let _ = copy.abort(f.error().to_string()).await;
            }
            Err(f)
        }
        (Err(f), None) => Err(f),
    }
}

/// Stops the producer after a failed `COPY` statement or read-back.
async fn stop(
    rx: mpsc::Receiver<Batch>,
    parser: tokio::task::JoinHandle<Result<Produce, Fail>>,
    f: Fail,
) -> Fail {
    drop(rx);
    let _ = join(parser).await;
    f
}

/// The rows each target took, as Postgres counted them.
#[derive(Debug, Default)]
struct Sink {
    direct: u64,
    staged: u64,
    staging_created: bool,
}

impl Sink {
    fn count(&mut self, target: Target, rows: u64) {
        match target {
            Target::Table => self.direct += rows,
            Target::Stage => self.staged += rows,
        }
    }

    /// The path, `held` when rows were left out of staging (perhaps all of them).
    fn path(&self, held: bool) -> LoadPath {
        match (self.direct, self.staging_created || held) {
            (_, false) => LoadPath::Direct,
            (0, true) => LoadPath::Staged,
            (_, true) => LoadPath::Split,
        }
    }

    /// Opens the `COPY` into `target` in its format (the caller sends the format's header),
    /// creating the staging table the first time.
    async fn open<'c>(
        &mut self,
        conn: &'c mut PgConnection,
        plan: &UpsertPlan,
        formats: &Formats,
        target: Target,
    ) -> Result<PgCopyIn<&'c mut PgConnection>, sqlx::Error> {
        let statement = match target {
            Target::Table => plan.copy_target(),
            Target::Stage => {
                if !self.staging_created {
                    sqlx::query(sqlx::AssertSqlSafe(plan.create_staging(STAGE)))
                        .execute(&mut *conn)
                        .await?;
                    self.staging_created = true;
                }
                plan.copy_staging(STAGE)
            }
        };
        let format = formats.of(target);
        conn.copy_in_raw(&format!("{statement}{}", format.options()))
            .await
    }
}

async fn join(parser: tokio::task::JoinHandle<Result<Produce, Fail>>) -> Result<Produce, Fail> {
    parser
        .await
        .map_err(|e| Fail::Permanent(Error::Reader(format!("row reader panicked: {e}"))))?
}

/// `COPY` data for one send.
#[derive(Debug)]
struct Batch {
    rows: Vec<u8>,
    path: BatchPath,
}

#[derive(Debug)]
enum BatchPath {
    Direct,
    Staged,
    /// The first batch of a direct attempt: the same rows in staging form, should the probe of
    /// the first keys say no.
    Undecided {
        staged_rows: Vec<u8>,
        keys: Vec<String>,
    },
}

/// Where a batch's rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Table,
    Stage,
}

impl BatchPath {
    fn target(&self) -> Target {
        match self {
            Self::Direct | Self::Undecided { .. } => Target::Table,
            Self::Staged => Target::Stage,
        }
    }
}

/// Where the producer writes rows.
#[derive(Debug)]
enum Route {
    /// Until the first batch is decided: table form in `out`, staging form here, and the keys
    /// to probe.
    Undecided {
        staged: Box<CopyRows>,
        probe: Vec<String>,
    },
    Direct,
    Staged,
    /// After a staged first batch: keys above the table's greatest straight into the table
    /// (`out`), the rest kept staged.
    Split(Box<Split>),
}

/// The table's greatest key, and what the first batch had above it.
#[derive(Debug)]
struct Ceiling {
    key: Vec<u8>,
    /// Hashes of the first batch's keys above the greatest: those rows are staged with the
    /// first batch, so a later row with one of these keys is staged too (else the staged,
    /// earlier row would overwrite it).
    above: HashSet<u64>,
}

impl Ceiling {
    /// Whether `key` is not above the greatest key (in byte order): the table may hold it.
    fn below(&self, key: &str) -> bool {
        key.as_bytes() <= self.key.as_slice()
    }
}

/// A split load: where rows go, and the rows kept in staging form.
#[derive(Debug)]
struct Split {
    ceiling: Ceiling,
    /// Rows whose key is not above the greatest, in staging form: staged after the direct ones.
    side: CopyRows,
}

/// What the producer did.
#[derive(Debug)]
struct Produce {
    rows_read: u64,
    sent: u64,
    keys: KeyOrder,
    quarantined: Quarantined,
}

impl Produce {
    /// What the `COPY` took, `held` of the rows produced left out.
    fn copied(self, path: LoadPath, direct: u64, held: Held) -> Copied {
        Copied {
            path,
            rows_read: self.rows_read,
            sent: self.sent - held.rows(),
            direct,
            keys: self.keys,
            quarantined: self.quarantined,
            held,
        }
    }
}

/// The blocking half: rows in, batches out, rejected rows to quarantine.
struct Producer {
    route: Route,
    out: CopyRows,
    formats: Formats,
    /// The table's column names, for an error.
    names: Vec<String>,
    keys: KeyOrder,
    quarantine: Quarantine,
    sent: u64,
    batch_bytes: usize,
    tx: mpsc::Sender<Batch>,
    /// The async side's answer to the first direct batch: `true` to stay direct.
    decision: sync_mpsc::Receiver<bool>,
    /// The table's greatest key, until the first batch is decided.
    ceiling: Option<Ceiling>,
}

impl Producer {
    fn new(
        rows: &Rows,
        attempt: Attempt,
        batch_bytes: usize,
        formats: Formats,
        tx: mpsc::Sender<Batch>,
        decision: sync_mpsc::Receiver<bool>,
    ) -> Self {
        let rules = rows.rules();
        let plan = rules.bound.plan();
        let names = rules.bound.names();
        let key_pos: Vec<usize> = plan
            .key
            .iter()
            .filter_map(|k| names.iter().position(|n| n == k))
            .collect();
        let (route, ceiling) = match attempt {
            Attempt::Staged => (Route::Staged, None),
            Attempt::Direct { ceiling } => (
                Route::Undecided {
                    staged: Box::new(formats.staging.writer(buffer(batch_bytes))),
                    probe: Vec::new(),
                },
                ceiling.filter(|_| key_pos.len() == 1).map(|k| Ceiling {
                    key: k.into_bytes(),
                    above: HashSet::new(),
                }),
            ),
        };
        let out = match route {
            Route::Staged => formats.staging.writer(buffer(batch_bytes)),
            _ => formats.table.writer(buffer(batch_bytes)),
        };
        Self {
            route,
            out,
            formats,
            names: names.iter().map(|n| n.to_string()).collect(),
            keys: KeyOrder::new(key_pos, plan.text_key()),
            quarantine: Quarantine::new(
                rules.header.clone(),
                rules.bound.redactions(),
                rules.ctx.salt.clone(),
            ),
            sent: 0,
            batch_bytes,
            tx,
            decision,
            ceiling,
        }
    }

    fn run(mut self, mut rows: Rows) -> Result<Produce, Fail> {
        while let Some(produced) = rows.next()? {
            match produced {
                Produced::Typed { line, row } => {
                    self.write(line, row)?;
                    if self.out.len() >= self.batch_bytes {
                        self.send()?;
                    }
                }
                Produced::Rejected { rejection, record } => {
                    self.quarantine.add(rejection, record)?;
                }
            }
        }
        self.send_pending()?;
        if let Route::Split(split) = self.route {
            // The kept rows, staged after the direct ones.
            let rows = split.side.into_inner();
            if !rows.is_empty() {
                let batch = Batch {
                    rows,
                    path: BatchPath::Staged,
                };
                self.tx.blocking_send(batch).map_err(|_| cancelled())?;
            }
        }
        Ok(Produce {
            rows_read: rows.read,
            sent: self.sent,
            keys: self.keys,
            quarantined: self.quarantine.finish()?,
        })
    }

    /// Writes one row in the form(s) its route needs.
    fn write(&mut self, line: u64, row: &TypedRow) -> Result<(), Fail> {
        let line = line.to_string();
        let numbered = std::iter::once(Some(line.as_str())).chain(row.iter());
        let key = self.keys.pos.first().and_then(|&k| row.get(k));
        let key = key.unwrap_or_default();
        // Whether the row is staged: its order and repeats matter to the staging path (its
        // upsert skips the sort or the de-duplication when it can). A direct COPY needs them
        // only while its first batch can still switch to staging; after that, a repeated key
        // meets the unique index.
        let staged = match &mut self.route {
            Route::Staged => {
                put(&mut self.out, numbered, Target::Stage, &self.names, &line)?;
                true
            }
            Route::Direct => {
                put(&mut self.out, row.iter(), Target::Table, &self.names, &line)?;
                false
            }
            Route::Undecided { staged, probe } => {
                if probe.len() < PROBE_KEYS && self.keys.pos.len() == 1 {
                    probe.push(key.to_owned());
                }
                if let Some(c) = &mut self.ceiling
                    && !c.below(key)
                {
                    c.above.insert(key_hash(key.as_bytes()));
                }
                put(staged, numbered, Target::Stage, &self.names, &line)?;
                put(&mut self.out, row.iter(), Target::Table, &self.names, &line)?;
                true
            }
            Route::Split(split) => {
                let c = &split.ceiling;
                if c.below(key)
                    || (!c.above.is_empty() && c.above.contains(&key_hash(key.as_bytes())))
                {
                    put(&mut split.side, numbered, Target::Stage, &self.names, &line)?;
                    true
                } else {
                    put(&mut self.out, row.iter(), Target::Table, &self.names, &line)?;
                    false
                }
            }
        };
        self.sent += 1;
        if staged
            && self.keys.observe(row)
            && matches!(self.route, Route::Undecided { .. })
            && let Route::Undecided { staged, .. } =
                std::mem::replace(&mut self.route, Route::Staged)
        {
            // A repeat in the first batch, nothing sent yet: carry on in staging form.
            self.out = *staged;
        }
        self.overflow()
    }

    /// Past [`SIDE_BATCHES`] batches of rows kept by a split, the direct rows so far are sent
    /// and the rest of the object is staged as it comes, after the kept rows.
    fn overflow(&mut self) -> Result<(), Fail> {
        let Route::Split(split) = &mut self.route else {
            return Ok(());
        };
        if split.side.len() < SIDE_BATCHES * self.batch_bytes {
            return Ok(());
        }
        self.send_pending()?;
        if let Route::Split(split) = std::mem::replace(&mut self.route, Route::Staged) {
            self.out = split.side;
        }
        Ok(())
    }

    /// Sends the rows written so far, if any, as a batch of the current route.
    fn send_pending(&mut self) -> Result<(), Fail> {
        if !self.out.is_empty() {
            let batch = self.batch();
            self.tx.blocking_send(batch).map_err(|_| cancelled())?;
        }
        Ok(())
    }

    /// Sends a full batch; after the first one of a direct attempt, waits for the decision.
    fn send(&mut self) -> Result<(), Fail> {
        let batch = self.batch();
        let undecided = matches!(batch.path, BatchPath::Undecided { .. });
        self.tx.blocking_send(batch).map_err(|_| cancelled())?;
        if undecided {
            // Every row so far is in the first batch.
            let first_rows = self.sent;
            let ceiling = self.ceiling.take();
            self.route = if self.decision.recv().unwrap_or(false) {
                // Direct from here on: the unique index watches for repeats.
                self.keys.forget();
                Route::Direct
            } else if let Some(ceiling) = ceiling.filter(|c| c.above.len() as u64 * 2 > first_rows)
            {
                // The table holds some of the first keys, but most are above its greatest:
                // the first batch is staged, and the rest split.
                Route::Split(Box::new(Split {
                    ceiling,
                    side: self.formats.staging.writer(buffer(self.batch_bytes)),
                }))
            } else {
                // The probe found an existing key: the rest goes to staging, in its form.
                self.out = self.formats.staging.writer(buffer(self.batch_bytes));
                Route::Staged
            };
        }
        Ok(())
    }

    /// The rows written so far as a batch (the first carries the undecided route's forms).
    fn batch(&mut self) -> Batch {
        let rows = self.out.take(buffer(self.batch_bytes));
        let path = match std::mem::replace(&mut self.route, Route::Staged) {
            Route::Undecided { staged, probe } => BatchPath::Undecided {
                staged_rows: staged.into_inner(),
                keys: probe,
            },
            Route::Direct => {
                self.route = Route::Direct;
                BatchPath::Direct
            }
            Route::Split(split) => {
                self.route = Route::Split(split);
                BatchPath::Direct
            }
            Route::Staged => BatchPath::Staged,
        };
        Batch { rows, path }
    }
}

/// A key's hash, for the sets that remember keys (a collision only ever says "maybe seen").
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Writes one row into `w`, in `target`'s form (the staging form has the line number first).
fn put<'a>(
    w: &mut CopyRows,
    fields: impl IntoIterator<Item = Option<&'a str>>,
    target: Target,
    names: &[String],
    line: &str,
) -> Result<(), Fail> {
    w.write_fields(fields)
        .map_err(|e| unencodable(names, line, e, target))
}

/// A value the binary format cannot carry: not its type's canonical text, which the mapping
/// always writes. The load stops, naming the line and the column (not the value).
fn unencodable(names: &[String], line: &str, e: EncodeError, target: Target) -> Fail {
    let column = match target {
        Target::Table => Some(e.column),
        Target::Stage => e.column.checked_sub(1),
    };
    let name = column
        .and_then(|c| names.get(c))
        .map_or(LINE_COLUMN, String::as_str);
    Fail::Permanent(Error::Reader(format!(
        "line {line}: column {name:?} ({}) cannot be sent in COPY's binary format: {}",
        e.ty, e.reason
    )))
}

fn buffer(batch_bytes: usize) -> Vec<u8> {
    Vec::with_capacity(batch_bytes + (128 << 10))
}

fn cancelled() -> Fail {
    Fail::Permanent(Error::Reader("the COPY stopped before the rows did".into()))
}

/// What the sent keys' order allows the upsert to skip: the sort (already ascending) or the
/// de-duplication (no key twice).
#[derive(Debug)]
pub(crate) struct KeyOrder {
    /// Positions of the key columns in the typed row.
    pos: Vec<usize>,
    /// Text keys in strictly ascending byte order so far: already in lock order.
    pub presorted: bool,
    /// No key seen twice (exact: decided on 64-bit hashes, a collision only says "maybe").
    pub unique: bool,
    /// The previous key, text columns joined by NUL (which no value contains, so byte order of
    /// the joined form is the tuple's order).
    prev: Vec<u8>,
    this: Vec<u8>,
    seen: HashSet<u64>,
    count: u64,
}

impl KeyOrder {
    fn new(pos: Vec<usize>, text_key: bool) -> Self {
        Self {
            pos,
            presorted: text_key,
            unique: true,
            prev: Vec::new(),
            this: Vec::new(),
            seen: HashSet::new(),
            count: 0,
        }
    }

    /// Takes the next row's key; true when it is the first repeat seen.
    fn observe(&mut self, row: &TypedRow) -> bool {
        self.count += 1;
        if self.presorted {
            self.this.clear();
            for (i, &k) in self.pos.iter().enumerate() {
                if i > 0 {
                    self.this.push(0);
                }
                self.this
                    .extend_from_slice(row.get(k).unwrap_or_default().as_bytes());
            }
            if self.count > 1 && self.this <= self.prev {
                self.presorted = false;
            }
            std::mem::swap(&mut self.prev, &mut self.this);
        }
        if !self.unique {
            return false;
        }
        let mut h = DefaultHasher::new();
        for &k in &self.pos {
            row.get(k).hash(&mut h);
        }
        if self.seen.insert(h.finish()) {
            return false;
        }
        // A repeated key (or a hash collision): de-duplicate in SQL.
        self.unique = false;
        self.seen = HashSet::new();
        true
    }

    /// Stops remembering keys (the unique index takes over).
    fn forget(&mut self) {
        self.seen = HashSet::new();
    }
}
