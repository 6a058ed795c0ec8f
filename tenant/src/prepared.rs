//! Statements prepared once per connection, for the queries every request runs (the
//! status check, the user behind a token). tokio-postgres runs a query given as text in
//! two round trips (prepare, then execute); a statement kept in the connection's cache
//! (deadpool's, emptied when the connection closes) runs in one.

use std::future::Future;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;

/// Runs `run` with `sql` prepared on `client` (from its cache after the first time).
///
/// A statement cached before a migration changed the columns it returns fails with
/// "cached plan must not change result type": then the cache is emptied and the
/// statement prepared afresh, once.
pub async fn with_prepared<T, F, Fut>(
    client: &ClientWrapper,
    sql: &str,
    run: F,
) -> Result<T, tokio_postgres::Error>
where
    F: Fn(Statement) -> Fut,
    Fut: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let statement = client.prepare_cached(sql).await?;
    match run(statement).await {
        Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
            tracing::debug!(error = %crate::chain(&e), "statement cache emptied");
            client.statement_cache.clear();
            run(client.prepare_cached(sql).await?).await
        }
        other => other,
    }
}
