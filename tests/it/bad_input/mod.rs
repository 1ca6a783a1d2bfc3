//! The bad-input corpus: hostile or broken files, paths, settings and codec
//! bytes. Every case asserts a clear error naming the table, file, key or
//! codec at fault — or, where the input is legitimate but surprising, the
//! exact rows — and none may panic. RELIABILITY.md lists the cases.

use datafusion::prelude::SessionContext;

#[cfg(feature = "ballista")]
mod codec;
mod config;
mod files;
mod paths;

/// The error of a query that must fail (at planning or while running).
pub async fn query_error(ctx: &SessionContext, sql: &str) -> String {
    let err = match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => df
            .collect()
            .await
            .expect_err("query should fail")
            .to_string(),
    };
    // A panic in a spawned task comes back as an error; it must not happen.
    assert!(!err.contains("panicked"), "{err}");
    err
}
