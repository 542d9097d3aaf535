//! The `COPY` protocol of one attempt: a blocking producer reads, transforms and batches rows;
//! the async side streams the batches into Postgres, straight into the table (`direct`) or into
//! a staging table.
//!
//! The path is decided by the first batch. While it is undecided the producer writes each row in
//! both forms (table and staging), keeps the first keys, and watches for a repeated key; the
//! async side probes those keys against the table. A repeat or an existing key turns the load
//! to staging without a second read. After that, a repeat meets the unique index: a unique
//! violation that the caller answers by rolling back and staging ([`Fail::Stage`]).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::mpsc as sync_mpsc;

use sluice_flatten::csv::CsvWriter;
use sluice_transform::{TypedRow, UpsertPlan, quote_ident};
use sqlx::PgConnection;
use tokio::sync::mpsc;

use crate::error::{Error, Fail};
use crate::quarantine::{Quarantine, Quarantined};
use crate::rows::{Produced, Rows};
use crate::summary::LoadPath;

/// Staging table name (temporary, dropped at commit).
pub(crate) const STAGE: &str = "sluice_stage";
/// Keys of the first rows checked against the table before a direct `COPY`.
const PROBE_KEYS: usize = 1000;

/// What the `COPY` took.
#[derive(Debug)]
pub(crate) struct Copied {
    pub path: LoadPath,
    pub rows_read: u64,
    /// Rows sent (to the table or to staging).
    pub sent: u64,
    pub keys: KeyOrder,
    pub quarantined: Quarantined,
}

/// Streams `rows` into Postgres: straight into the table when `try_direct` and the first batch
/// qualifies, else into the staging table.
pub(crate) async fn copy_rows(
    conn: &mut PgConnection,
    rows: Rows,
    try_direct: bool,
    batch_bytes: usize,
) -> Result<Copied, Fail> {
    let plan = rows.rules().bound.plan().clone();
    let (tx, mut rx) = mpsc::channel::<Batch>(4);
    let (decide_tx, decide_rx) = sync_mpsc::sync_channel::<bool>(1);
    let producer = Producer::new(&rows, try_direct, batch_bytes, tx, decide_rx);
    let parser = tokio::task::spawn_blocking(move || producer.run(rows));
    let Some(mut first) = rx.recv().await else {
        // No row to send (none, or all rejected): nothing to COPY either way. Reported as
        // direct: no staging table, no upsert, nothing inserted.
        let produced = join(parser).await?;
        return Ok(produced.copied(LoadPath::Direct));
    };
    let path = decide(conn, &plan, &mut first, &decide_tx).await?;
    let statement = match path {
        LoadPath::Direct => plan.copy_target(),
        LoadPath::Staged => {
            sqlx::query(sqlx::AssertSqlSafe(plan.create_staging(STAGE)))
                .execute(&mut *conn)
                .await?;
            plan.copy_staging(STAGE)
        }
    };
    let produced = stream(conn, &statement, first, rx, parser).await?;
    // The probe's answer decides, also for a first batch that was the producer's last.
    Ok(produced.copied(path))
}

/// The first batch decides the path: an undecided one is probed against the table.
async fn decide(
    conn: &mut PgConnection,
    plan: &UpsertPlan,
    first: &mut Batch,
    decide_tx: &sync_mpsc::SyncSender<bool>,
) -> Result<LoadPath, Fail> {
    let (staged_rows, keys) = match std::mem::replace(&mut first.path, BatchPath::Staged) {
        BatchPath::Undecided { staged_rows, keys } => (staged_rows, keys),
        decided => {
            first.path = decided;
            return Ok(first.path.decided());
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
    }
    // The producer waits for this after a full first batch (not after its last).
    let _ = decide_tx.try_send(!exists);
    Ok(if exists {
        LoadPath::Staged
    } else {
        LoadPath::Direct
    })
}

/// Sends the batches as they come, then ends the `COPY` in step with the producer's outcome.
async fn stream(
    conn: &mut PgConnection,
    statement: &str,
    first: Batch,
    mut rx: mpsc::Receiver<Batch>,
    parser: tokio::task::JoinHandle<Result<Produce, Fail>>,
) -> Result<Produce, Fail> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut next = Some(first);
    let mut send_err = None;
    loop {
        let batch = match next.take() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(b) => b,
                None => break,
            },
        };
        if let Err(e) = copy.send(batch.rows).await {
            send_err = Some(e);
            break;
        }
    }
    drop(rx);
    let produced = join(parser).await;
    if let Some(e) = send_err {
        return Err(e.into());
    }
    match produced {
        Ok(p) => {
            let sent = copy.finish().await?;
            debug_assert_eq!(sent, p.sent);
            Ok(p)
        }
        Err(f) => {
            if matches!(f, Fail::Stage(_)) {
                // Ending the COPY normally keeps the protocol in step whatever the server
                // already said (a unique violation, say); the savepoint undoes it anyway.
                let _ = copy.finish().await;
            } else {
                let _ = copy.abort(f.error().to_string()).await;
            }
            Err(f)
        }
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

impl BatchPath {
    fn decided(&self) -> LoadPath {
        match self {
            Self::Direct | Self::Undecided { .. } => LoadPath::Direct,
            Self::Staged => LoadPath::Staged,
        }
    }
}

/// Where the producer writes rows.
#[derive(Debug)]
enum Route {
    /// Until the first batch is decided: table form in `out`, staging form here, and the keys
    /// to probe.
    Undecided {
        staged: Box<CsvWriter<Vec<u8>>>,
        probe: Vec<String>,
    },
    Direct,
    Staged,
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
    fn copied(self, path: LoadPath) -> Copied {
        Copied {
            path,
            rows_read: self.rows_read,
            sent: self.sent,
            keys: self.keys,
            quarantined: self.quarantined,
        }
    }
}

/// The blocking half: rows in, batches out, rejected rows to quarantine.
struct Producer {
    route: Route,
    out: CsvWriter<Vec<u8>>,
    keys: KeyOrder,
    quarantine: Quarantine,
    sent: u64,
    batch_bytes: usize,
    tx: mpsc::Sender<Batch>,
    /// The async side's answer to the first direct batch: `true` to stay direct.
    decision: sync_mpsc::Receiver<bool>,
}

impl Producer {
    fn new(
        rows: &Rows,
        try_direct: bool,
        batch_bytes: usize,
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
        let route = if try_direct {
            Route::Undecided {
                staged: Box::new(CsvWriter::new(buffer(batch_bytes))),
                probe: Vec::new(),
            }
        } else {
            Route::Staged
        };
        Self {
            route,
            out: CsvWriter::new(buffer(batch_bytes)),
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
        }
    }

    fn run(mut self, mut rows: Rows) -> Result<Produce, Fail> {
        while let Some(produced) = rows.next()? {
            match produced {
                Produced::Typed { line, row } => {
                    self.write(line, row)?;
                    if self.out.get_mut().len() >= self.batch_bytes {
                        self.send()?;
                    }
                }
                Produced::Rejected { rejection, record } => {
                    self.quarantine.add(rejection, record)?;
                }
            }
        }
        self.out.flush().map_err(Error::Buffer)?;
        if !self.out.get_mut().is_empty() {
            let batch = self.batch()?;
            self.tx.blocking_send(batch).map_err(|_| cancelled())?;
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
        match &mut self.route {
            Route::Staged => self.out.write_fields(numbered),
            Route::Direct => self.out.write_fields(row.iter()),
            Route::Undecided { staged, probe } => {
                if probe.len() < PROBE_KEYS && self.keys.pos.len() == 1 {
                    probe.push(row.get(self.keys.pos[0]).unwrap_or_default().to_owned());
                }
                staged
                    .write_fields(numbered)
                    .and_then(|()| self.out.write_fields(row.iter()))
            }
        }
        .map_err(Error::Buffer)?;
        self.sent += 1;
        // Order and repeats matter to the staging path (its upsert skips the sort or the
        // de-duplication when it can). A direct COPY needs them only while its first batch
        // can still switch to staging; after that, a repeated key meets the unique index.
        if !matches!(self.route, Route::Direct)
            && self.keys.observe(row)
            && let Route::Undecided { staged, .. } =
                std::mem::replace(&mut self.route, Route::Staged)
        {
            // Nothing sent yet: carry on in staging form.
            self.out = *staged;
        }
        Ok(())
    }

    /// Sends a full batch; after the first one of a direct attempt, waits for the decision.
    fn send(&mut self) -> Result<(), Fail> {
        let batch = self.batch()?;
        let undecided = matches!(batch.path, BatchPath::Undecided { .. });
        self.tx.blocking_send(batch).map_err(|_| cancelled())?;
        if undecided {
            self.route = if self.decision.recv().unwrap_or(false) {
                // Direct from here on: the unique index watches for repeats.
                self.keys.forget();
                Route::Direct
            } else {
                // The probe found an existing key: the rest goes to staging.
                Route::Staged
            };
        }
        Ok(())
    }

    /// The rows written so far as a batch (the first carries the undecided route's forms).
    fn batch(&mut self) -> Result<Batch, Fail> {
        self.out.flush().map_err(Error::Buffer)?;
        let rows = std::mem::replace(self.out.get_mut(), buffer(self.batch_bytes));
        let path = match std::mem::replace(&mut self.route, Route::Staged) {
            Route::Undecided { staged, probe } => BatchPath::Undecided {
                staged_rows: staged.into_inner().map_err(Error::Buffer)?,
                keys: probe,
            },
            Route::Direct => {
                self.route = Route::Direct;
                BatchPath::Direct
            }
            Route::Staged => BatchPath::Staged,
        };
        Ok(Batch { rows, path })
    }
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
