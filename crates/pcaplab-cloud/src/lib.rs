//! pcaplab-cloud: the one job every pcaplab front end runs — process one capture object, local
//! or on S3, into Parquet / CSV outputs and a DynamoDB summary item — and the AWS plumbing it
//! needs (configuration, S3 through object_store, DynamoDB through the AWS SDK).
//!
//! The packet work is pcaplab-core's; this crate moves bytes and records results, and reads
//! the S3 notifications that name the objects ([`notification`], [`pipeline`]). See
//! [`job`] for the order of operations that keeps results consistent across crashes and
//! retries, and [`layout`] for where outputs go.

pub mod aws;
pub mod dataset;
pub mod extract;
pub mod fanout;
pub mod io;
pub mod item_file;
pub mod job;
pub mod layout;
pub mod location;
pub mod notification;
pub mod pipeline;
pub mod split;
pub mod table;

pub use aws::Aws;
pub use job::{Job, JobError, JobOptions, JobReport, Listed, Request, error_chain};
pub use layout::Output;
pub use location::{Location, LocationError};
pub use notification::ObjectRef;
pub use pipeline::{Outcome, Pipeline};

/// A small runtime for the unit tests that drive async code from a plain test.
#[cfg(test)]
pub(crate) fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}
