//! `pcaplab serve`: flags to a [`pcaplab_serve::App`], logging, signals.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pcaplab_cloud::Aws;
use pcaplab_serve::captures::Source;
use pcaplab_serve::sns::{Endpoint, HttpFetch, Verifier};
use pcaplab_serve::{App, Config};

use crate::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::service::init_logging(args.log_format);
    let runtime = crate::service::io_runtime()?;
    runtime.block_on(async {
        let shutdown = crate::service::shutdown_signal("finishing requests in flight")?;
        let override_url = HttpFetch::endpoint_from_env().map_err(anyhow::Error::msg)?;
        // The AWS configuration, when something needs it: the table, or signing the
        // certificate fetches sent to an endpoint override. Flow downloads from captures or
        // datasets on S3 use it too; without it they are answered 503.
        let aws = if args.dynamodb_table.is_some() || override_url.is_some() {
            Some(Arc::new(Aws::load().await))
        } else {
            None
        };
        let source = match (&args.data, &args.dynamodb_table, &aws) {
            (Some(dir), None, _) => {
                let meta = std::fs::metadata(dir)
                    .with_context(|| format!("--data {}", dir.display()))?;
                anyhow::ensure!(meta.is_dir(), "--data {}: not a directory", dir.display());
                Source::Dir(dir.clone())
            }
            (None, Some(table), Some(aws)) => {
                let client = aws.dynamodb().clone();
                client
                    .describe_table()
                    .table_name(table)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "--dynamodb-table {table}: {}",
                            pcaplab_cloud::error_chain(&e)
                        )
                    })?;
                Source::Table {
                    client,
                    table: table.clone(),
                }
            }
            // clap's ArgGroup makes this exactly one.
            _ => anyhow::bail!("give --data DIR or --dynamodb-table NAME"),
        };
        let endpoint = match (override_url, &aws) {
            (Some(url), Some(aws)) => {
                tracing::warn!(
                    endpoint = %url,
                    "AWS endpoint override: SNS signing certificates are fetched from it, not from SNS"
                );
                let credentials = aws
                    .sdk()
                    .credentials_provider()
                    .context("no AWS credentials to sign requests to the endpoint override")?;
                let region = aws
                    .sdk()
                    .region()
                    .map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
                Some(Endpoint {
                    url,
                    credentials,
                    region,
                })
            }
            _ => None,
        };
        let emulator = endpoint.is_some();
        let fetch = HttpFetch::new(endpoint).map_err(anyhow::Error::msg)?;
        let verifier = Verifier::new(Arc::new(fetch), args.accept_topics.clone(), emulator);
        let app = App::new(
            source,
            verifier,
            Config {
                auto_confirm: args.auto_confirm,
                aws,
            },
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        let addr = listener.local_addr().context("the listening address")?;
        tracing::info!(address = %format!("http://{addr}"), "listening");
        pcaplab_serve::serve(listener, app, shutdown)
            .await
            .context("serving")?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}
