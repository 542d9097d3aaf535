//! Waiting for a query: `GetQueryExecution` on a jittered exponential schedule, under a deadline.

use std::time::{Duration, Instant};

use aws_sdk_athena::error::DisplayErrorContext;
use aws_sdk_athena::types::{QueryExecutionState, StatementType};
use backon::BackoffBuilder;

use crate::{Athena, AthenaError, Ended};

/// The polling schedule: `first`, doubling with jitter, never more than `max` between two
/// looks (and never past the deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Poll {
    /// 200 ms doubling, capped at 5 s.
    fn default() -> Self {
        Poll {
            first: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

/// What a finished query tells about itself.
pub(crate) struct Done {
    pub statement_type: Option<StatementType>,
    pub bytes_scanned: Option<i64>,
    pub reused: bool,
}

impl Athena {
    /// Polls until the query succeeds (its facts), ends otherwise (`Ended`), or the deadline
    /// passes (it is stopped: `Deadline`).
    pub(crate) async fn wait(
        &self,
        query_id: &str,
        deadline: Instant,
    ) -> Result<Done, AthenaError> {
        let started = Instant::now();
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(self.poll.first)
            .with_max_delay(self.poll.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let got = self
                .client
                .get_query_execution()
                .query_execution_id(query_id)
                .send()
                .await
                .map_err(|e| AthenaError::Poll {
                    query_id: query_id.to_owned(),
                    message: DisplayErrorContext(&e).to_string(),
                })?;
            let Some(execution) = got.query_execution else {
                return Err(AthenaError::Poll {
                    query_id: query_id.to_owned(),
                    message: "no QueryExecution in the answer".into(),
                });
            };
            let status = execution.status.as_ref();
            let state = status.and_then(|s| s.state.clone());
            let ended = |ended| AthenaError::Ended {
                query_id: query_id.to_owned(),
                ended,
                reason: status.and_then(|s| s.state_change_reason.clone()),
                error: status.and_then(|s| s.athena_error.as_ref()).map(|e| {
                    format!(
                        "category {}, type {}, retryable {}: {}",
                        e.error_category.unwrap_or_default(),
                        e.error_type.unwrap_or_default(),
                        e.retryable,
                        e.error_message.as_deref().unwrap_or("")
                    )
                }),
            };
            match state {
                Some(QueryExecutionState::Succeeded) => {
                    let stats = execution.statistics.as_ref();
                    return Ok(Done {
                        statement_type: execution.statement_type,
                        bytes_scanned: stats.and_then(|s| s.data_scanned_in_bytes),
                        reused: stats
                            .and_then(|s| s.result_reuse_information.as_ref())
                            .is_some_and(|r| r.reused_previous_result),
                    });
                }
                Some(QueryExecutionState::Failed) => return Err(ended(Ended::Failed)),
                Some(QueryExecutionState::Cancelled) => return Err(ended(Ended::Cancelled)),
                _ => {}
            }
            let now = Instant::now();
            let delay = delays.next().unwrap_or(self.poll.max);
            if now >= deadline {
                let state = state.map_or_else(|| "unknown".to_owned(), |s| s.as_str().to_owned());
                return Err(self.stop(query_id, state, now - started).await);
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
        }
    }

    /// Stops a query that ran out of time; the error says whether the stop went through.
    async fn stop(&self, query_id: &str, state: String, waited: Duration) -> AthenaError {
        let stopped = self
            .client
            .stop_query_execution()
            .query_execution_id(query_id)
            .send()
            .await;
        if let Err(e) = &stopped {
            tracing::warn!(error = %DisplayErrorContext(e), "StopQueryExecution failed");
        }
        AthenaError::Deadline {
            query_id: query_id.to_owned(),
            state,
            waited,
            stopped: stopped.is_ok(),
        }
    }
}
