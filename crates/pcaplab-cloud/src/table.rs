//! The DynamoDB summary table (the lab's `PacketCaptures`, partition key `s3Id`).
//!
//! One item per capture, written with `PutItem` under a condition: an item for a newer
//! version of the object (a later `last_modified`) is never replaced by an older one.
//! (`BatchWriteItem` and its UnprocessedItems cannot carry a condition, so each item is its own
//! request.) Watchers that poll a prefix claim an object by a lease on its item
//! ([`claim`]). Throttling, 5xx and network faults are retried by the SDK's standard retry mode —
//! exponential backoff with full jitter — with more attempts than its default.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
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

/// The inverse of [`to_sdk`], for reading items back. Types the summary never writes (sets,
/// binary) are `None`.
pub fn from_sdk(v: &AttributeValue) -> Option<AttrValue> {
    Some(match v {
        AttributeValue::S(s) => AttrValue::S(s.clone()),
        AttributeValue::N(n) => AttrValue::N(n.clone()),
        AttributeValue::Bool(b) => AttrValue::Bool(*b),
        AttributeValue::Null(_) => AttrValue::Null,
        AttributeValue::L(l) => AttrValue::L(l.iter().filter_map(from_sdk).collect()),
        AttributeValue::M(m) => AttrValue::M(
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), from_sdk(v)?)))
                .collect(),
        ),
        _ => return None,
    })
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

/// What the table recorded for an object before a run writes its item.
#[derive(Debug, Default)]
pub struct Previous {
    pub last_modified: Option<String>,
    /// Every output URL the item records ([`recorded_outputs`]).
    pub outputs: Vec<String>,
}

/// The item for `s3_id`, if there is one (read consistently): its `last_modified` and the
/// outputs it records.
pub async fn previous(client: &Client, table: &str, s3_id: &str) -> Result<Previous, TableError> {
    let out = client
        .get_item()
        .table_name(table)
        .key("s3Id", AttributeValue::S(s3_id.to_owned()))
        .projection_expression("last_modified, outputs, stale_outputs")
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| table_error(table, s3_id, e))?;
    let Some(item) = out.item else {
        return Ok(Previous::default());
    };
    Ok(Previous {
        last_modified: item
            .get("last_modified")
            .and_then(|v| v.as_s().ok().cloned()),
        outputs: recorded_outputs(&item),
    })
}

/// The output URLs an item lists (its `outputs`).
/// A capture converted in byte ranges lists its packet outputs' first parts: the others'
/// URLs are made from it ([`crate::layout::part_urls`]).
pub fn outputs_of(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    let parts = item
        .get("parts")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1);
    item.get("outputs")
        .and_then(|o| o.as_m().ok())
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_s().ok())
                .flat_map(|u| crate::layout::part_urls(u, parts))
                .collect()
        })
        .unwrap_or_default()
}

/// Every output URL an item is answerable for: its `outputs`, and its `stale_outputs` — a
/// previous version's outputs that could not be deleted yet.
pub fn recorded_outputs(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    let mut urls = outputs_of(item);
    if let Some(stale) = item.get("stale_outputs").and_then(|l| l.as_l().ok()) {
        urls.extend(stale.iter().filter_map(|v| v.as_s().ok().cloned()));
    }
    urls
}

/// Record on the item of `s3_id` — if it is still the one for `last_modified` — the outputs of
/// a previous version that could not be deleted, so that the next run over the object deletes
/// them.
pub async fn record_stale(
    client: &Client,
    table: &str,
    s3_id: &str,
    last_modified: &str,
    urls: &[String],
) -> Result<bool, TableError> {
    let result = client
        .update_item()
        .table_name(table)
        .key("s3Id", s(s3_id))
        .update_expression("SET stale_outputs = :stale")
        .condition_expression("last_modified = :lm")
        .expression_attribute_values(
            ":stale",
            AttributeValue::L(urls.iter().map(|u| s(u)).collect()),
        )
        .expression_attribute_values(":lm", s(last_modified))
        .send()
        .await;
    conditional(table, s3_id, result)
}

/// A watcher's claim on an object: lease attributes on the object's own item, so the table
/// keeps one item per capture. `PutItem` of the result replaces the whole item, which ends the
/// lease; a claim on a new object creates an item holding only `s3Id` and the lease until then.
#[derive(Clone, Debug)]
pub struct Lease {
    pub table: String,
    /// Who claims: unique per watcher process.
    pub owner: String,
    /// How long a claim lasts unless renewed (a crashed watcher's claims run out after this).
    pub duration: Duration,
}

/// What a claim attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The caller holds the lease now.
    Taken,
    /// The item already records this version (its ETag): nothing to do.
    Done,
    /// Another watcher holds a live lease.
    Held { owner: String },
}

/// What a lease renewal found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The caller's lease runs on.
    Renewed,
    /// The item records the claimed version's result and holds no lease: the lease ended because
    /// the result was written — by the caller's own work, in its last steps (announcing, deleting
    /// stale outputs), so it must finish them; or, rarely, by a watcher that took over a lapsed
    /// lease and finished between two renewals, when finishing writes the same keys and item
    /// again (and announces a second time).
    Recorded,
    /// The lease is another watcher's now, or was given up: the caller's work is not wanted.
    Lost,
}

impl Renewal {
    /// Why a renewal's condition (`lease_owner = caller`) failed, from the item as it was then.
    fn refused(item: &HashMap<String, AttributeValue>, etag: &str) -> Renewal {
        if !item.contains_key("lease_owner") && records_version(item, etag) {
            Renewal::Recorded
        } else {
            Renewal::Lost
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// S3 quotes ETags (`"abc"`); a listing and a `GetObject` may differ in that.
fn etag_forms(etag: &str) -> (String, String) {
    let bare = etag.trim_matches('"').to_owned();
    let quoted = format!("\"{bare}\"");
    (bare, quoted)
}

/// Whether `item` records the result for version `etag` of its object (either ETag form).
fn records_version(item: &HashMap<String, AttributeValue>, etag: &str) -> bool {
    let (bare, quoted) = etag_forms(etag);
    item.get("etag")
        .and_then(|v| v.as_s().ok())
        .is_some_and(|e| *e == bare || *e == quoted)
}

/// A conditional write's result: `Ok(true)` written, `Ok(false)` its condition did not hold.
fn conditional<O, E, R>(
    table: &str,
    s3_id: &str,
    result: Result<O, SdkError<E, R>>,
) -> Result<bool, TableError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e))
            if e.err().code() == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(table_error(table, s3_id, e)),
    }
}

/// A conditional `UpdateItem`'s result that asked for the item on a failed condition:
/// `Ok(None)` updated, `Ok(Some(item))` its condition did not hold and this was the item then.
fn update_refused<O, R>(
    table: &str,
    s3_id: &str,
    result: Result<O, SdkError<UpdateItemError, R>>,
) -> Result<Option<HashMap<String, AttributeValue>>, TableError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(None),
        Err(SdkError::ServiceError(e)) => match e.into_err() {
            UpdateItemError::ConditionalCheckFailedException(c) => {
                Ok(Some(c.item.unwrap_or_default()))
            }
            other => Err(table_error(
                table,
                s3_id,
                SdkError::<UpdateItemError, ()>::service_error(other, ()),
            )),
        },
        Err(e) => Err(table_error(table, s3_id, e)),
    }
}

impl Lease {
    fn until(&self) -> i64 {
        now_ms().saturating_add(i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX))
    }

    /// Claim `s3_id` (version `etag`) unless the table records this version already or another
    /// watcher's lease is live. Clocks of the watchers must agree to well within the lease.
    pub async fn claim(
        &self,
        client: &Client,
        s3_id: &str,
        etag: &str,
    ) -> Result<Claimed, TableError> {
        let (bare, quoted) = etag_forms(etag);
        let result = client
            .update_item()
            .table_name(&self.table)
            .key("s3Id", s(s3_id))
            .update_expression("SET lease_owner = :me, lease_until = :until, lease_etag = :etag")
            .condition_expression(
                "(attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :me) \
                 AND (attribute_not_exists(etag) OR NOT (etag IN (:bare, :quoted)))",
            )
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":until", n(self.until()))
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":etag", s(etag))
            .expression_attribute_values(":bare", s(&bare))
            .expression_attribute_values(":quoted", s(&quoted))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let Some(item) = update_refused(&self.table, s3_id, result)? else {
            return Ok(Claimed::Taken);
        };
        if records_version(&item, etag) {
            Ok(Claimed::Done)
        } else {
            Ok(Claimed::Held {
                owner: item
                    .get("lease_owner")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default(),
            })
        }
    }

    /// Extend the caller's lease on `s3_id`, claimed for version `etag`.
    pub async fn renew(
        &self,
        client: &Client,
        s3_id: &str,
        etag: &str,
    ) -> Result<Renewal, TableError> {
        let result = client
            .update_item()
            .table_name(&self.table)
            .key("s3Id", s(s3_id))
            .update_expression("SET lease_until = :until")
            .condition_expression("lease_owner = :me")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":until", n(self.until()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        Ok(match update_refused(&self.table, s3_id, result)? {
            None => Renewal::Renewed,
            Some(item) => Renewal::refused(&item, etag),
        })
    }

    /// Give up the caller's lease on `s3_id` (the work failed or was abandoned): an item that
    /// holds nothing but the claim is deleted, any other loses its lease attributes.
    pub async fn release(&self, client: &Client, s3_id: &str) -> Result<(), TableError> {
        let deleted = client
            .delete_item()
            .table_name(&self.table)
            .key("s3Id", s(s3_id))
            .condition_expression("lease_owner = :me AND attribute_not_exists(processed_at)")
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        if conditional(&self.table, s3_id, deleted)? {
            return Ok(());
        }
        let removed = client
            .update_item()
            .table_name(&self.table)
            .key("s3Id", s(s3_id))
            .update_expression("REMOVE lease_owner, lease_until, lease_etag")
            .condition_expression("lease_owner = :me")
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        // Not ours (any more): nothing to release.
        conditional(&self.table, s3_id, removed).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;

    #[test]
    fn a_refused_renewal_tells_a_written_result_from_a_lost_lease() {
        let item = |attrs: &[(&str, &str)]| -> HashMap<String, AttributeValue> {
            attrs.iter().map(|(k, v)| ((*k).to_owned(), s(v))).collect()
        };
        // The result for the claimed version, in either ETag form, and no lease: written.
        for etag in ["abc", "\"abc\""] {
            assert_eq!(
                Renewal::refused(&item(&[("s3Id", "b/k"), ("etag", etag)]), "\"abc\""),
                Renewal::Recorded,
                "{etag}"
            );
        }
        // Another watcher's lease, even over this version's result: lost.
        assert_eq!(
            Renewal::refused(
                &item(&[("etag", "abc"), ("lease_owner", "w2"), ("lease_until", "1")]),
                "abc"
            ),
            Renewal::Lost
        );
        // An older version's result, or the item deleted (a released claim): lost.
        assert_eq!(
            Renewal::refused(&item(&[("etag", "old")]), "abc"),
            Renewal::Lost
        );
        assert_eq!(Renewal::refused(&HashMap::new(), "abc"), Renewal::Lost);
    }

    #[test]
    fn an_item_answers_for_its_outputs_and_its_stale_ones() {
        let item: HashMap<String, AttributeValue> = [
            (
                "outputs".to_owned(),
                AttributeValue::M(
                    [("parquet".to_owned(), s("s3://r/new.parquet"))]
                        .into_iter()
                        .collect(),
                ),
            ),
            (
                "stale_outputs".to_owned(),
                AttributeValue::L(vec![s("s3://r/old.parquet"), s("s3://r/old.flows.parquet")]),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(outputs_of(&item), ["s3://r/new.parquet"]);
        assert_eq!(
            recorded_outputs(&item),
            [
                "s3://r/new.parquet",
                "s3://r/old.parquet",
                "s3://r/old.flows.parquet"
            ]
        );
        assert!(recorded_outputs(&HashMap::new()).is_empty());
    }

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
