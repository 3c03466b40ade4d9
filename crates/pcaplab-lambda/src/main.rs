//! The `pcaplab-lambda` binary (`bootstrap` in the zip that cargo-lambda builds for
//! `provided.al2023`): configuration and clients once per execution environment, then the
//! runtime loop.

// The runtime loop nests the job's futures deeply.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Instant;

use lambda_runtime::{Error, LambdaEvent, service_fn, tracing};
use pcaplab_lambda::{Config, Handler};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    tracing::init_default_subscriber();
    let config = Config::from_env(|name| std::env::var(name).ok())?;
    let handler = Arc::new(Handler::new(config.clone()).await?);
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        ?config,
        "pcaplab-lambda ready"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = Arc::clone(&handler);
        async move {
            let result = handler.handle(event.payload).await;
            match &result {
                Ok(v) => tracing::info!(result = %v, "done"),
                Err(e) => tracing::error!(error = %e, "failed; the event will be retried"),
            }
            result
        }
    }))
    .await
}
