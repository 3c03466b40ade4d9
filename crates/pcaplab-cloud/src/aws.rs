//! One AWS configuration for every client: aws-config's standard chain (environment,
//! profiles, region, IMDS / ECS credentials, `AWS_ENDPOINT_URL[_<SERVICE>]`), and object_store's
//! S3 client built from the same values — so one endpoint variable points S3 and DynamoDB at
//! an emulator or an S3-compatible store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::ProvideCredentials;
use aws_sdk_dynamodb::config::SharedCredentialsProvider;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{ClientOptions, CredentialProvider, RetryConfig};

/// Region used when the chain gives none (S3-compatible stores and emulators ignore it).
const FALLBACK_REGION: &str = "us-east-1";

/// The loaded configuration and the clients built from it, once per process.
pub struct Aws {
    sdk: SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    /// One S3 client per bucket (object_store binds a client to its bucket).
    s3: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aws")
            .field("region", &self.sdk.region())
            .field("endpoint", &self.sdk.endpoint_url())
            .finish_non_exhaustive()
    }
}

impl Aws {
    /// Load the standard chain. Nothing is contacted yet: credentials are resolved on first use.
    pub async fn load() -> Self {
        Self::from_sdk(aws_config::defaults(BehaviorVersion::latest()).load().await)
    }

    pub fn from_sdk(sdk: SdkConfig) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        Aws {
            sdk,
            dynamodb,
            s3: Mutex::new(HashMap::new()),
        }
    }

    /// The loaded configuration, to build other SDK clients from.
    pub fn sdk(&self) -> &SdkConfig {
        &self.sdk
    }

    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    /// The endpoint S3 requests go to, if not AWS's own: `AWS_ENDPOINT_URL_S3`, else the
    /// chain's general endpoint (`AWS_ENDPOINT_URL` or the profile's `endpoint_url`).
    pub fn s3_endpoint(&self) -> Option<String> {
        std::env::var("AWS_ENDPOINT_URL_S3")
            .ok()
            .filter(|e| !e.is_empty())
            .or_else(|| self.sdk.endpoint_url().map(str::to_owned))
    }

    /// The S3 client for `bucket`, built on first use from the same configuration as the SDK.
    pub fn s3(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        let mut cache = self.s3.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = cache.get(bucket) {
            return Ok(Arc::clone(store));
        }
        let region = self
            .sdk
            .region()
            .map_or(FALLBACK_REGION.to_owned(), |r| r.to_string());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_retry(RetryConfig {
                max_retries: 8,
                retry_timeout: Duration::from_secs(120),
                ..RetryConfig::default()
            })
            .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(120)));
        if let Some(endpoint) = self.s3_endpoint() {
            // Path-style requests (object_store's default) work with any endpoint; plain
            // http only when the endpoint itself says http.
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let Some(provider) = self.sdk.credentials_provider() {
            builder = builder.with_credentials(Arc::new(SdkCredentials::new(provider)));
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        cache.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }
}

/// The SDK's credential chain as object_store's credential provider, cached until shortly
/// before the credentials expire (the SDK clients cache in their identity cache; a bare
/// provider does not).
#[derive(Debug)]
struct SdkCredentials {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl SdkCredentials {
    fn new(provider: SharedCredentialsProvider) -> Self {
        SdkCredentials {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

/// Refresh credentials this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = &*cached {
            let fresh = expiry.is_none_or(|e| SystemTime::now() + EXPIRY_MARGIN < e);
            if fresh {
                return Ok(Arc::clone(credential));
            }
        }
        let c = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            }
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_owned(),
            secret_key: c.secret_access_key().to_owned(),
            token: c.session_token().map(str::to_owned),
        });
        *cached = Some((Arc::clone(&credential), c.expiry()));
        Ok(credential)
    }
}
