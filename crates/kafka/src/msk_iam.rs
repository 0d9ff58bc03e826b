//! Amazon MSK IAM access control: SASL/OAUTHBEARER whose token is a SigV4
//! presigned `kafka-cluster:Connect` request (base64url, unpadded), signed
//! with the credentials in the environment: on Lambda, the function role's
//! keys, which the runtime puts there. librdkafka asks for a new token
//! before the last expires (15 minutes), through
//! [`rdkafka::ClientContext::generate_oauth_token`].
//!
//! Signed with `aws-sigv4` alone. The AWS default credential chain
//! (`aws-config`: profiles, SSO, STS, the instance and container endpoints)
//! brought an HTTP client, rustls and aws-lc into every Kafka-linked Lambda
//! binary for a source Lambda never uses.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use rdkafka::client::OAuthToken;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static SIGNED: AtomicU64 = AtomicU64::new(0);

/// How many tokens this process's Kafka clients were given: one per client
/// at start, then one per refresh.
pub fn tokens_issued() -> u64 {
    SIGNED.load(Ordering::Relaxed)
}

/// The `SALESTRACK_KAFKA_SASL_MECHANISM` value that selects it.
pub const MECHANISM: &str = "AWS_MSK_IAM";

/// How long a token is valid; MSK refuses longer.
const LIFETIME: Duration = Duration::from_secs(900);

/// Where the keys come from (the names the AWS SDKs and the Lambda runtime
/// use). The session token is absent for long-term keys.
const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// Signs tokens for the cluster's region with one set of keys.
#[derive(Clone)]
pub struct MskIam {
    region: String,
    credentials: Credentials,
}

impl std::fmt::Debug for MskIam {
    // Credentials' own Debug redacts the secret; the key id is enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIam")
            .field("region", &self.region)
            .field("access_key_id", &self.credentials.access_key_id())
            .finish()
    }
}

impl MskIam {
    /// With the keys in `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and,
    /// for temporary ones, `AWS_SESSION_TOKEN`. Refused, naming them, when
    /// a key is missing or empty: a client without keys would only fail at
    /// its first connection, far from the cause.
    pub fn from_environment(region: impl Into<String>) -> Result<MskIam, String> {
        MskIam::from_variables(region, |name| std::env::var(name).ok())
    }

    /// [`MskIam::from_environment`] with the variables read by `var`.
    pub fn from_variables(
        region: impl Into<String>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<MskIam, String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let (Some(key_id), Some(secret)) = (var(ACCESS_KEY_ID), var(SECRET_ACCESS_KEY)) else {
            return Err(format!(
                "AWS_MSK_IAM signs with the keys in {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} \
                 (and {SESSION_TOKEN} for temporary ones), which are not set: Lambda sets them \
                 from the function's role; elsewhere export them, for example with \
                 `aws configure export-credentials --format env`"
            ));
        };
        Ok(MskIam::new(
            region,
            Credentials::new(key_id, secret, var(SESSION_TOKEN), None, "environment"),
        ))
    }

    pub fn new(region: impl Into<String>, credentials: Credentials) -> MskIam {
        MskIam {
            region: region.into(),
            credentials,
        }
    }

    /// A token signed now.
    pub fn token(&self) -> Result<OAuthToken, String> {
        self.token_at(SystemTime::now())
    }

    /// A token signed at `time` (whole seconds count: `X-Amz-Date` has no
    /// fraction), valid [`LIFETIME`] from then.
    pub fn token_at(&self, time: SystemTime) -> Result<OAuthToken, String> {
        let since_epoch = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970")?;
        let signed_at = UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs());
        let url = self.presigned_url(signed_at)?;
        let expires = since_epoch.as_secs() + LIFETIME.as_secs();
        Ok(OAuthToken {
            token: base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, url),
            principal_name: String::new(),
            lifetime_ms: i64::try_from(expires * 1000).map_err(|_| "the clock is past 2262")?,
        })
    }

    /// `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`
    /// presigned for `GET` (the `host` header signed, an empty body), then a
    /// `User-Agent` parameter, which is not signed (as the AWS signers do).
    fn presigned_url(&self, time: SystemTime) -> Result<String, String> {
        let endpoint = format!("https://kafka.{}.amazonaws.com/?", self.region);
        // The query starts after the `?`: a serializer over the whole URL
        // would open it with a `&`.
        let start = endpoint.len();
        let mut query = form_urlencoded::Serializer::for_suffix(endpoint, start);
        query.append_pair("Action", "kafka-cluster:Connect");
        let unsigned = query.finish();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(LIFETIME);
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("kafka-cluster")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| format!("MSK IAM signing parameters: {e}"))?;
        let request = SignableRequest::new(
            "GET",
            &unsigned,
            std::iter::empty(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| format!("MSK IAM request to sign: {e}"))?;
        let (instructions, _) = sign(request, &params.into())
            .map_err(|e| format!("MSK IAM signature: {e}"))?
            .into_parts();
        let mut query = form_urlencoded::Serializer::for_suffix(unsigned, 0);
        for (name, value) in instructions.params() {
            query.append_pair(name, value);
        }
        query.append_pair(
            "User-Agent",
            concat!("salestrack-kafka/", env!("CARGO_PKG_VERSION")),
        );
        Ok(query.finish())
    }

    /// A token for a Kafka client that asked for one.
    pub(crate) fn issue(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let token = self.token()?;
        SIGNED.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }
}
