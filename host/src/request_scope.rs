//! What the request being served is known as, for records made deep in the pipeline: the
//! `x-request-id` the HTTP front door gave it (also in its response and its log lines).

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `future` as the request `id`.
pub async fn with_request_id<F: Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The id of the request this task serves, if it came through a front door that set one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
