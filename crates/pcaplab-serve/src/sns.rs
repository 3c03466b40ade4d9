//! Amazon SNS deliveries to an HTTP(S) endpoint: parse, check the signing certificate's URL,
//! fetch the certificate (cached), and verify the signature, as
//! <https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html> describes.
//!
//! Nothing in a message is believed before its signature verifies: a message that fails any
//! check is [`Rejected`] whole.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256, RsaParameters,
    UnparsedPublicKey,
};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
use base64::Engine as _;
use pcaplab_cloud::error_chain;
use reqwest::Url;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm, alg_id,
};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::bounded::Bounded;
use crate::der;

/// Largest certificate file accepted (SNS's are about 2 KB).
const MAX_CERT_BYTES: usize = 64 * 1024;
/// Certificates kept: SNS signs with one per region at a time, and rotates rarely.
const CERT_CACHE: usize = 32;
/// Fetches in flight at once, so a burst of messages naming fresh URLs cannot fan out.
const FETCHES: usize = 4;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What an SNS delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "Notification" => Some(Kind::Notification),
            "SubscriptionConfirmation" => Some(Kind::SubscriptionConfirmation),
            "UnsubscribeConfirmation" => Some(Kind::UnsubscribeConfirmation),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Notification => "Notification",
            Kind::SubscriptionConfirmation => "SubscriptionConfirmation",
            Kind::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }
}

/// A message whose signature verified.
#[derive(Clone, Debug)]
pub struct Message {
    pub kind: Kind,
    pub message_id: String,
    pub topic_arn: String,
    /// Only when the signature covers it (see [`Verifier::verify`] on emulators).
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    /// Confirmations: the URL that confirms, and its token.
    pub subscribe_url: Option<String>,
    pub token: Option<String>,
}

/// Why a delivery was not believed.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("not an SNS message: {0}")]
    Malformed(String),
    #[error("{what} {url:?} refused: {why}")]
    Url {
        what: &'static str,
        url: String,
        why: &'static str,
    },
    #[error("cannot fetch the signing certificate {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("signing certificate {url} unusable: {why}")]
    Certificate { url: String, why: String },
    #[error("signature does not verify (SignatureVersion {version}, certificate {url})")]
    Signature { version: &'static str, url: String },
    #[error("topic {0} is not one this server accepts")]
    Topic(String),
}

/// Where certificates (and subscription confirmations) are fetched from: real HTTPS, or a
/// test's own source.
#[async_trait]
pub trait Fetch: Send + Sync {
    /// GET `url` (already checked to be an SNS URL) and return at most `limit` bytes of body.
    async fn get(&self, url: &Url, limit: usize) -> Result<Vec<u8>, String>;
}

/// Fetches over HTTPS with the system's roots.
///
/// With an AWS endpoint override (`AWS_ENDPOINT_URL_SNS` / `AWS_ENDPOINT_URL`) the same path
/// and query go to that endpoint instead, as the SDKs send every other SNS call there, so an
/// emulator's certificate is fetched from the emulator. Such a request is signed (SigV4, service
/// `sns`) like any SDK call: moto's server tells services apart by the signature's scope.
pub struct HttpFetch {
    client: reqwest::Client,
    endpoint: Option<Endpoint>,
}

/// An endpoint override and what signs requests to it.
pub struct Endpoint {
    pub url: Url,
    pub credentials: SharedCredentialsProvider,
    pub region: String,
}

impl HttpFetch {
    pub fn new(endpoint: Option<Endpoint>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // An SNS URL that redirects elsewhere would escape the host check.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpFetch { client, endpoint })
    }

    /// The endpoint override the AWS SDKs would use for SNS, if any.
    pub fn endpoint_from_env() -> Result<Option<Url>, String> {
        let var = ["AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL"]
            .into_iter()
            .find_map(|v| {
                std::env::var(v)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .map(|s| (v, s))
            });
        match var {
            None => Ok(None),
            Some((name, value)) => Url::parse(&value)
                .map(Some)
                .map_err(|e| format!("{name}={value:?}: {e}")),
        }
    }

    /// SigV4 headers for a GET of `url` as an SNS request.
    async fn sign(e: &Endpoint, url: &Url) -> Result<Vec<(String, String)>, String> {
        let credentials = e
            .credentials
            .provide_credentials()
            .await
            .map_err(|err| format!("credentials to sign for {}: {err}", e.url))?;
        let identity = credentials.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&e.region)
            .name("sns")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|err| err.to_string())?
            .into();
        let host = url.host_str().unwrap_or_default().to_owned();
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let request = SignableRequest::new(
            "GET",
            url.as_str(),
            [("host", host.as_str())].into_iter(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|err| err.to_string())?;
        let (instructions, _) = aws_sigv4::http_request::sign(request, &params)
            .map_err(|err| err.to_string())?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

#[async_trait]
impl Fetch for HttpFetch {
    async fn get(&self, url: &Url, limit: usize) -> Result<Vec<u8>, String> {
        let request = match &self.endpoint {
            None => self.client.get(url.clone()),
            Some(e) => {
                let mut target = e.url.clone();
                target.set_path(url.path());
                target.set_query(url.query());
                let mut request = self.client.get(target.clone());
                for (name, value) in Self::sign(e, &target).await? {
                    request = request.header(name, value);
                }
                request
            }
        };
        let mut response = request.send().await.map_err(|e| error_chain(&e))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len() + chunk.len() > limit {
                return Err(format!("{url}: more than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Is `url` one SNS serves: https, a host `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn`),
/// no credentials, the default port? Returns the reason if not.
pub fn check_sns_url(url: &str) -> Result<Url, &'static str> {
    let parsed = Url::parse(url).map_err(|_| "not a URL")?;
    if parsed.scheme() != "https" {
        return Err("not https");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("carries credentials");
    }
    if parsed.port().is_some() {
        return Err("names a port");
    }
    let host = parsed.host_str().ok_or("no host")?;
    let region = host
        .strip_prefix("sns.")
        .and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        })
        .ok_or("not an sns.<region>.amazonaws.com host")?;
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err("not an sns.<region>.amazonaws.com host");
    }
    Ok(parsed)
}

/// RSA PKCS #1 v1.5 over SHA-1 (SignatureVersion 1) or SHA-256 (2), with the key as
/// rustls-webpki hands it over from the certificate.
#[derive(Debug)]
struct Rsa {
    params: &'static RsaParameters,
    sig_alg: AlgorithmIdentifier,
}

/// sha1WithRSAEncryption (1.2.840.113549.1.1.5) with NULL parameters, without the SEQUENCE.
const RSA_PKCS1_SHA1: AlgorithmIdentifier = AlgorithmIdentifier::from_slice(&[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
]);

static SIGNATURE_V1: Rsa = Rsa {
    params: &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
    sig_alg: RSA_PKCS1_SHA1,
};
static SIGNATURE_V2: Rsa = Rsa {
    params: &RSA_PKCS1_2048_8192_SHA256,
    sig_alg: alg_id::RSA_PKCS1_SHA256,
};

impl SignatureVerificationAlgorithm for Rsa {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        UnparsedPublicKey::new(self.params, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.sig_alg
    }
}

/// The JSON SNS posts. Every field SNS documents is a string.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    topic_arn: String,
    subject: Option<String>,
    message: String,
    timestamp: String,
    signature_version: String,
    signature: String,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: String,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
    token: Option<String>,
}

/// The string SNS signs: name and value lines in its documented order.
fn string_to_sign(e: &Envelope, kind: Kind, with_subject: bool) -> Result<String, Rejected> {
    let mut fields: Vec<(&str, &str)> = vec![("Message", &e.message), ("MessageId", &e.message_id)];
    match kind {
        Kind::Notification => {
            if let Some(subject) = e.subject.as_deref().filter(|_| with_subject) {
                fields.push(("Subject", subject));
            }
        }
        Kind::SubscriptionConfirmation | Kind::UnsubscribeConfirmation => {
            let missing = |f| Rejected::Malformed(format!("{} without {f}", kind.as_str()));
            fields.push((
                "SubscribeURL",
                e.subscribe_url
                    .as_deref()
                    .ok_or_else(|| missing("SubscribeURL"))?,
            ));
            fields.push(("Timestamp", &e.timestamp));
            fields.push(("Token", e.token.as_deref().ok_or_else(|| missing("Token"))?));
        }
    }
    if kind == Kind::Notification {
        fields.push(("Timestamp", &e.timestamp));
    }
    fields.push(("TopicArn", &e.topic_arn));
    fields.push(("Type", kind.as_str()));
    let mut s = String::new();
    for (name, value) in fields {
        s.push_str(name);
        s.push('\n');
        s.push_str(value);
        s.push('\n');
    }
    Ok(s)
}

/// A fetched certificate: its DER and validity period (seconds since the epoch).
struct Cert {
    der: CertificateDer<'static>,
    not_before: i64,
    not_after: i64,
}

/// Verifies deliveries; holds the certificate cache. One per server.
pub struct Verifier {
    fetch: Arc<dyn Fetch>,
    /// URL → certificate, at most [`CERT_CACHE`], oldest dropped first.
    cache: Mutex<Bounded<String, Arc<Cert>>>,
    fetches: Semaphore,
    /// Accept only these topics (empty: any).
    topics: Vec<String>,
    /// The certificate comes from an emulator (an endpoint override is set).
    emulator: bool,
}

impl Verifier {
    pub fn new(fetch: Arc<dyn Fetch>, topics: Vec<String>, emulator: bool) -> Self {
        Verifier {
            fetch,
            cache: Mutex::new(Bounded::new(CERT_CACHE)),
            fetches: Semaphore::new(FETCHES),
            topics,
            emulator,
        }
    }

    /// Check one delivery. `header_type` is the `x-amz-sns-message-type` header, if sent: it
    /// must agree with the body's `Type` (moto sends none).
    ///
    /// moto (5.x) signs its notifications without the `Subject` line SNS includes. With an
    /// endpoint override only, a notification whose signature verifies without it is
    /// accepted with its subject dropped, so nothing unsigned is ever kept.
    pub async fn verify(
        &self,
        body: &[u8],
        header_type: Option<&str>,
    ) -> Result<Message, Rejected> {
        let e: Envelope =
            serde_json::from_slice(body).map_err(|err| Rejected::Malformed(format!("{err}")))?;
        let kind = Kind::parse(&e.kind)
            .ok_or_else(|| Rejected::Malformed(format!("unknown Type {:?}", e.kind)))?;
        if let Some(h) = header_type
            && h != e.kind
        {
            return Err(Rejected::Malformed(format!(
                "x-amz-sns-message-type {h:?} but Type {:?}",
                e.kind
            )));
        }
        let (version, alg): (&'static str, &Rsa) = match e.signature_version.as_str() {
            "1" => ("1", &SIGNATURE_V1),
            "2" => ("2", &SIGNATURE_V2),
            v => return Err(Rejected::Malformed(format!("SignatureVersion {v:?}"))),
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(e.signature.trim())
            .map_err(|err| Rejected::Malformed(format!("Signature is not base64: {err}")))?;
        let url = check_sns_url(&e.signing_cert_url).map_err(|why| Rejected::Url {
            what: "SigningCertURL",
            url: e.signing_cert_url.clone(),
            why,
        })?;
        if !self.topics.is_empty() && !self.topics.contains(&e.topic_arn) {
            return Err(Rejected::Topic(e.topic_arn));
        }
        let cert = self.certificate(&url).await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if now < cert.not_before || now > cert.not_after {
            return Err(Rejected::Certificate {
                url: e.signing_cert_url,
                why: "outside its validity period".into(),
            });
        }
        let parsed =
            webpki::EndEntityCert::try_from(&cert.der).map_err(|err| Rejected::Certificate {
                url: e.signing_cert_url.clone(),
                why: format!("{err:?}"),
            })?;
        let verifies = |with_subject: bool| -> Result<bool, Rejected> {
            let text = string_to_sign(&e, kind, with_subject)?;
            Ok(parsed
                .verify_signature(alg, text.as_bytes(), &signature)
                .is_ok())
        };
        let subject_signed = if verifies(true)? {
            true
        } else if self.emulator
            && kind == Kind::Notification
            && e.subject.is_some()
            && verifies(false)?
        {
            false
        } else {
            return Err(Rejected::Signature {
                version,
                url: e.signing_cert_url,
            });
        };
        if let Some(subscribe_url) = &e.subscribe_url {
            check_sns_url(subscribe_url).map_err(|why| Rejected::Url {
                what: "SubscribeURL",
                url: subscribe_url.clone(),
                why,
            })?;
        }
        Ok(Message {
            kind,
            message_id: e.message_id,
            topic_arn: e.topic_arn,
            subject: e.subject.filter(|_| subject_signed),
            message: e.message,
            timestamp: e.timestamp,
            subscribe_url: e.subscribe_url,
            token: e.token,
        })
    }

    /// Confirm a subscription: GET its (verified, checked) SubscribeURL.
    pub async fn confirm(&self, message: &Message) -> Result<(), String> {
        let url = message.subscribe_url.as_deref().ok_or("no SubscribeURL")?;
        let url = check_sns_url(url).map_err(|why| format!("SubscribeURL {url:?}: {why}"))?;
        let _permit = self.fetches.acquire().await.map_err(|e| e.to_string())?;
        self.fetch.get(&url, MAX_CERT_BYTES).await.map(drop)
    }

    async fn certificate(&self, url: &Url) -> Result<Arc<Cert>, Rejected> {
        let key = url.as_str().to_owned();
        if let Some(cert) = self.lock().get(&key) {
            return Ok(Arc::clone(cert));
        }
        let bytes = {
            let _permit = self.fetches.acquire().await.map_err(|e| Rejected::Fetch {
                url: key.clone(),
                message: e.to_string(),
            })?;
            self.fetch
                .get(url, MAX_CERT_BYTES)
                .await
                .map_err(|message| Rejected::Fetch {
                    url: key.clone(),
                    message,
                })?
        };
        let unusable = |why: String| Rejected::Certificate {
            url: key.clone(),
            why,
        };
        let der = CertificateDer::from_pem_slice(&bytes)
            .map_err(|e| unusable(format!("not a PEM certificate: {e:?}")))?;
        webpki::EndEntityCert::try_from(&der).map_err(|e| unusable(format!("{e:?}")))?;
        let (not_before, not_after) =
            der::validity(&der).ok_or_else(|| unusable("unreadable validity period".into()))?;
        let cert = Arc::new(Cert {
            der,
            not_before,
            not_after,
        });
        self.lock().insert(key, Arc::clone(&cert));
        Ok(cert)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bounded<String, Arc<Cert>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_urls() {
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
            "https://sns.us-gov-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=1",
        ] {
            assert!(check_sns_url(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("http://sns.us-east-1.amazonaws.com/x.pem", "not https"),
            (
                "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
                "not an sns.<region>.amazonaws.com host",
            ),
            (
                "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
                "not an sns.<region>.amazonaws.com host",
            ),
            (
                "https://sns.amazonaws.com/x.pem",
                "not an sns.<region>.amazonaws.com host",
            ),
            (
                "https://sns.us_east.amazonaws.com/x.pem",
                "not an sns.<region>.amazonaws.com host",
            ),
            (
                "https://s3.us-east-1.amazonaws.com/x.pem",
                "not an sns.<region>.amazonaws.com host",
            ),
            (
                "https://a.sns.us-east-1.amazonaws.com/x.pem",
                "not an sns.<region>.amazonaws.com host",
            ),
            (
                "https://sns.us-east-1.amazonaws.com:8443/x.pem",
                "names a port",
            ),
            (
                "https://user@sns.us-east-1.amazonaws.com/x.pem",
                "carries credentials",
            ),
            ("sns.us-east-1.amazonaws.com/x.pem", "not a URL"),
        ] {
            assert_eq!(check_sns_url(bad).err(), Some(why), "{bad}");
        }
    }

    fn envelope(kind: &str, subject: Option<&str>) -> Envelope {
        Envelope {
            kind: kind.into(),
            message_id: "id".into(),
            topic_arn: "arn".into(),
            subject: subject.map(Into::into),
            message: "line 1\nline 2".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            signature_version: "2".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subscribe_url: Some("https://sns.x.amazonaws.com/?t".into()),
            token: Some("tok".into()),
        }
    }

    #[test]
    fn strings_to_sign() {
        let n = envelope("Notification", Some("subj"));
        assert_eq!(
            string_to_sign(&n, Kind::Notification, true).ok(),
            Some("Message\nline 1\nline 2\nMessageId\nid\nSubject\nsubj\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\narn\nType\nNotification\n".into())
        );
        assert_eq!(
            string_to_sign(&n, Kind::Notification, false).ok(),
            Some("Message\nline 1\nline 2\nMessageId\nid\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\narn\nType\nNotification\n".into())
        );
        let c = envelope("SubscriptionConfirmation", None);
        assert_eq!(
            string_to_sign(&c, Kind::SubscriptionConfirmation, true).ok(),
            Some("Message\nline 1\nline 2\nMessageId\nid\nSubscribeURL\nhttps://sns.x.amazonaws.com/?t\nTimestamp\n2026-01-01T00:00:00.000Z\nToken\ntok\nTopicArn\narn\nType\nSubscriptionConfirmation\n".into())
        );
        let mut no_token = envelope("SubscriptionConfirmation", None);
        no_token.token = None;
        assert!(string_to_sign(&no_token, Kind::SubscriptionConfirmation, true).is_err());
    }
}
