//! The DynamoDB summary table (the lab's `PacketCaptures`, partition key `s3Id`).
//!
//! One item per capture, written with `PutItem` under a condition: an item for a newer
//! version of the object (a later `last_modified`) is never replaced by an older one.
//! (`BatchWriteItem` and its UnprocessedItems cannot carry a condition, so each item is its own
//! request.) Throttling, 5xx and network faults are retried by the SDK's standard retry mode —
//! exponential backoff with full jitter — with more attempts than its default.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use pcaplab_core::{AttrValue, Item};

/// Attempts per request (the SDK's default is 3).
const MAX_ATTEMPTS: u32 = 8;

/// A DynamoDB client with the retry policy above, from the shared configuration.
pub fn client(base: &Client) -> Client {
    let config = base
        .config()
        .to_builder()
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_secs(10)),
        )
        .build();
    Client::from_conf(config)
}

/// A failed table request, classified.
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB table {table}{}: {message}", item_part(s3_id))]
pub struct TableError {
    pub table: String,
    pub s3_id: String,
    pub message: String,
    /// Throttling, a 5xx or a network fault that outlived the retries: try again later.
    pub retryable: bool,
}

fn item_part(s3_id: &str) -> String {
    match s3_id {
        "-" => String::new(),
        id => format!(", item {id}"),
    }
}

fn table_error<E, R>(table: &str, s3_id: &str, e: SdkError<E, R>) -> TableError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (retryable, message) = match &e {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown error");
            let retryable = matches!(
                code,
                "ThrottlingException"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
            );
            let message = match (code, service.err().message()) {
                ("ResourceNotFoundException", _) => {
                    "table not found (create it, or check the region and the endpoint)".to_owned()
                }
                (code, Some(m)) => format!("{code}: {m}"),
                (code, None) => code.to_owned(),
            };
            (retryable, message)
        }
        SdkError::ConstructionFailure(_) => (false, crate::job::error_chain(&e)),
        _ => (true, crate::job::error_chain(&e)),
    };
    TableError {
        table: table.to_owned(),
        s3_id: s3_id.to_owned(),
        message,
        retryable,
    }
}

pub fn to_sdk(v: &AttrValue) -> AttributeValue {
    match v {
        AttrValue::S(s) => AttributeValue::S(s.clone()),
        AttrValue::N(n) => AttributeValue::N(n.clone()),
        AttrValue::Bool(b) => AttributeValue::Bool(*b),
        AttrValue::Null => AttributeValue::Null(true),
        AttrValue::L(l) => AttributeValue::L(l.iter().map(to_sdk).collect()),
        AttrValue::M(m) => {
            AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_sdk(v))).collect())
        }
    }
}

/// What a conditional write found.
#[derive(Debug)]
pub enum Put {
    /// Written; the item it replaced, if any.
    Written(Option<HashMap<String, AttributeValue>>),
    /// The table holds a result for a newer version of the object (that item, as DynamoDB
    /// returned it); nothing was written.
    Newer(Option<HashMap<String, AttributeValue>>),
}

/// Write `item` unless the table holds one for a newer version of the object.
pub async fn put(client: &Client, table: &str, item: &Item) -> Result<Put, TableError> {
    let s3_id = match item.get("s3Id") {
        Some(AttrValue::S(s)) => s.as_str(),
        _ => "",
    };
    let mut request = client
        .put_item()
        .table_name(table)
        .set_item(Some(
            item.0.iter().map(|(k, v)| (k.clone(), to_sdk(v))).collect(),
        ))
        .return_values(ReturnValue::AllOld)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if let Some(AttrValue::S(lm)) = item.get("last_modified") {
        // RFC 3339 with nine fraction digits: string order is time order.
        request = request
            .condition_expression(
                "attribute_not_exists(s3Id) OR attribute_not_exists(last_modified) OR last_modified <= :lm",
            )
            .expression_attribute_values(":lm", AttributeValue::S(lm.clone()));
    }
    match request.send().await {
        Ok(out) => Ok(Put::Written(out.attributes)),
        Err(SdkError::ServiceError(e)) => match e.into_err() {
            PutItemError::ConditionalCheckFailedException(c) => Ok(Put::Newer(c.item)),
            other => Err(table_error(
                table,
                s3_id,
                SdkError::<PutItemError, ()>::service_error(other, ()),
            )),
        },
        Err(e) => Err(table_error(table, s3_id, e)),
    }
}

/// Check that `table` exists and is reachable (before any work, so a typo fails fast).
pub async fn check(client: &Client, table: &str) -> Result<(), TableError> {
    client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| table_error(table, "-", e))
}

/// The `last_modified` of the item for `s3_id`, if there is one (read consistently).
pub async fn last_modified(
    client: &Client,
    table: &str,
    s3_id: &str,
) -> Result<Option<String>, TableError> {
    let out = client
        .get_item()
        .table_name(table)
        .key("s3Id", AttributeValue::S(s3_id.to_owned()))
        .projection_expression("last_modified")
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| table_error(table, s3_id, e))?;
    Ok(out
        .item
        .and_then(|mut i| i.remove("last_modified"))
        .and_then(|v| v.as_s().ok().cloned()))
}

/// The output URLs an item records.
pub fn outputs_of(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    item.get("outputs")
        .and_then(|o| o.as_m().ok())
        .map(|m| m.values().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;

    fn service(code: &str, message: &str) -> TableError {
        let e = PutItemError::generic(ErrorMetadata::builder().code(code).message(message).build());
        table_error(
            "T",
            "b/k",
            SdkError::<PutItemError, ()>::service_error(e, ()),
        )
    }

    #[test]
    fn faults_are_classified_as_aws_recommends() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "InternalServerError",
        ] {
            let e = service(code, "slow down");
            assert!(e.retryable, "{code}");
            assert_eq!(
                e.to_string(),
                format!("DynamoDB table T, item b/k: {code}: slow down")
            );
        }
        for code in ["AccessDeniedException", "ValidationException"] {
            assert!(!service(code, "no").retryable, "{code}");
        }
        let missing = service("ResourceNotFoundException", "Requested resource not found");
        assert!(!missing.retryable);
        assert!(missing.message.starts_with("table not found"), "{missing}");
        let timeout = table_error(
            "T",
            "-",
            SdkError::<PutItemError, ()>::timeout_error("read timed out"),
        );
        assert!(timeout.retryable);
        assert!(
            timeout.to_string().starts_with("DynamoDB table T: "),
            "{timeout}"
        );
    }
}
