//! # sluice-athena
//!
//! Runs one Athena query the way the seed's polling function should have:
//!
//! - **once**: `StartQueryExecution` carries a `ClientRequestToken`, so a retried start (the SDK
//!   retries throttling and 5xx) never runs the query twice; values go in
//!   `ExecutionParameters`, never into the SQL text; the workgroup and result reuse are the
//!   caller's;
//! - **waiting well**: `GetQueryExecution` is polled with jittered exponential backoff (200 ms
//!   doubling, capped at 5 s) under a deadline, after which the query is stopped
//!   (`StopQueryExecution`); `FAILED` and `CANCELLED` come back with Athena's reason and error;
//! - **every page**: `GetQueryResults` is read 1,000 rows a page with `NextToken` to the end; the
//!   header row Athena puts first in a `SELECT`'s first page is dropped there only; a cell
//!   without `VarCharValue` is NULL; values are typed from `ColumnInfo`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_athena::AthenaError> {
//! use std::time::{Duration, Instant};
//! use sluice_athena::{Athena, Query};
//!
//! let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let athena = Athena::new(aws_sdk_athena::Client::new(&aws));
//! let q = Query::new("SELECT color, count(*) AS n FROM unicorns WHERE dt = ? GROUP BY 1")
//!     .param("'2024-05-01'")
//!     .workgroup("sluice-lake");
//! let rows = athena.run(&q, Instant::now() + Duration::from_secs(60)).await?;
//! for row in &rows.rows {
//!     println!("{} {}", row[0], row[1]);
//! }
//! # Ok(()) }
//! ```

mod results;
mod wait;

use std::time::{Duration, Instant};

use aws_sdk_athena::error::DisplayErrorContext;
use aws_sdk_athena::types::{
    QueryExecutionContext, ResultReuseByAgeConfiguration, ResultReuseConfiguration,
};
use tracing::Instrument;

pub use crate::results::{Column, Rows, typed};
pub use crate::wait::Poll;

/// One query to run.
#[derive(Debug, Clone)]
pub struct Query {
    pub sql: String,
    /// Values for the `?` placeholders, in order, as SQL literals (`'text'`, `42`): Athena binds
    /// them (`ExecutionParameters`).
    pub params: Vec<String>,
    pub workgroup: Option<String>,
    pub database: Option<String>,
    /// Reuse the results of the same query run within this age (Athena's result reuse).
    pub reuse_max_age: Option<Duration>,
    /// The `ClientRequestToken`: the same token starts the same query at most once. A fresh
    /// UUID unless set; keep it across retries of a caller's own.
    pub token: String,
}

impl Query {
    pub fn new(sql: impl Into<String>) -> Query {
        Query {
            sql: sql.into(),
            params: Vec::new(),
            workgroup: None,
            database: None,
            reuse_max_age: None,
            token: uuid::Uuid::now_v7().to_string(),
        }
    }
    pub fn param(mut self, literal: impl Into<String>) -> Query {
        self.params.push(literal.into());
        self
    }
    pub fn workgroup(mut self, name: impl Into<String>) -> Query {
        self.workgroup = Some(name.into());
        self
    }
    pub fn database(mut self, name: impl Into<String>) -> Query {
        self.database = Some(name.into());
        self
    }
    pub fn reuse_results(mut self, max_age: Duration) -> Query {
        self.reuse_max_age = Some(max_age);
        self
    }
    pub fn token(mut self, token: impl Into<String>) -> Query {
        self.token = token.into();
        self
    }
}

/// How a query ended, when not with its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Failed,
    Cancelled,
}

/// Why a query gave no rows. Each variant names the query (`query_id`) once it has one.
#[derive(Debug, thiserror::Error)]
pub enum AthenaError {
    #[error("StartQueryExecution: {message}")]
    Start { message: String },
    #[error("query {query_id}: GetQueryExecution: {message}")]
    Poll { query_id: String, message: String },
    #[error("query {query_id} {ended:?}: {}{}", reason.as_deref().unwrap_or("no reason given"), error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Ended {
        query_id: String,
        ended: Ended,
        /// `Status.StateChangeReason`.
        reason: Option<String>,
        /// `Status.AthenaError`: category, type, whether a retry may succeed, message.
        error: Option<String>,
    },
    #[error("query {query_id}: still {state} at the deadline, after {waited:?}; {}", if *stopped { "stopped" } else { "StopQueryExecution failed: it may still run" })]
    Deadline {
        query_id: String,
        state: String,
        waited: Duration,
        stopped: bool,
    },
    #[error("query {query_id}: GetQueryResults: {message}")]
    Results { query_id: String, message: String },
}

/// An Athena client: the SDK's, and how it polls.
#[derive(Debug, Clone)]
pub struct Athena {
    client: aws_sdk_athena::Client,
    poll: Poll,
}

impl Athena {
    pub fn new(client: aws_sdk_athena::Client) -> Athena {
        Athena {
            client,
            poll: Poll::default(),
        }
    }

    /// The same client polling on another schedule.
    pub fn with_poll(mut self, poll: Poll) -> Athena {
        self.poll = poll;
        self
    }

    /// Starts `q`, waits for it until `deadline` (then stops it), and reads all its rows.
    pub async fn run(&self, q: &Query, deadline: Instant) -> Result<Rows, AthenaError> {
        let query_id = self.start(q).await?;
        let span = tracing::info_span!("athena_query", %query_id);
        async {
            let done = self.wait(&query_id, deadline).await?;
            let mut rows = self.results(&query_id, done.statement_type.as_ref()).await?;
            rows.query_id = query_id.clone();
            rows.bytes_scanned = done.bytes_scanned;
            rows.reused = done.reused;
            tracing::info!(rows = rows.rows.len(), bytes_scanned = ?rows.bytes_scanned, "query done");
            Ok(rows)
        }
        .instrument(span)
        .await
    }

    async fn start(&self, q: &Query) -> Result<String, AthenaError> {
        let mut start = self
            .client
            .start_query_execution()
            .query_string(&q.sql)
            .client_request_token(&q.token)
            .set_work_group(q.workgroup.clone());
        if !q.params.is_empty() {
            start = start.set_execution_parameters(Some(q.params.clone()));
        }
        if let Some(db) = &q.database {
            start = start
                .query_execution_context(QueryExecutionContext::builder().database(db).build());
        }
        if let Some(age) = q.reuse_max_age {
            let minutes = i32::try_from(age.as_secs().div_ceil(60)).unwrap_or(i32::MAX);
            let by_age = ResultReuseByAgeConfiguration::builder()
                .enabled(true)
                .max_age_in_minutes(minutes.max(1))
                .build();
            start = start.result_reuse_configuration(
                ResultReuseConfiguration::builder()
                    .result_reuse_by_age_configuration(by_age)
                    .build(),
            );
        }
        let started = start.send().await.map_err(|e| AthenaError::Start {
            message: DisplayErrorContext(&e).to_string(),
        })?;
        started
            .query_execution_id
            .ok_or_else(|| AthenaError::Start {
                message: "no QueryExecutionId in the answer".into(),
            })
    }
}
