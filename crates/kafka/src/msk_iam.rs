//! Amazon MSK IAM access control: SASL/OAUTHBEARER whose token is a SigV4
//! presigned `kafka-cluster:Connect` request, signed with the credentials of
//! the AWS default chain (on Lambda, the function role's keys in the
//! environment). librdkafka asks for a new token before the last expires
//! (15 minutes), through [`rdkafka::ClientContext::generate_oauth_token`].

use rdkafka::client::OAuthToken;
use std::sync::atomic::{AtomicU64, Ordering};

static SIGNED: AtomicU64 = AtomicU64::new(0);

/// How many tokens this process's Kafka clients were given: one per client
/// at start, then one per refresh.
pub fn tokens_issued() -> u64 {
    SIGNED.load(Ordering::Relaxed)
}

/// The `SALESTRACK_KAFKA_SASL_MECHANISM` value that selects it.
pub const MECHANISM: &str = "AWS_MSK_IAM";

/// Signs tokens for the cluster's region.
#[derive(Debug, Clone)]
pub struct MskIam {
    region: String,
}

impl MskIam {
    pub fn new(region: impl Into<String>) -> MskIam {
        MskIam {
            region: region.into(),
        }
    }

    /// A fresh token. librdkafka asks from its own threads, or from inside
    /// a consumer's `recv` on a Tokio worker, where blocking on a runtime
    /// panics: the signer's futures run on a runtime of their own, on a
    /// thread of their own (once per refresh, so the cost does not matter).
    pub fn token(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let region = aws_types::region::Region::new(self.region.clone());
        let (token, lifetime_ms) = std::thread::scope(|s| {
            s.spawn(
                || -> Result<(String, i64), Box<dyn std::error::Error + Send + Sync>> {
                    // Built and dropped on this thread: neither is allowed on a
                    // Tokio worker.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok(runtime.block_on(aws_msk_iam_sasl_signer::generate_auth_token(region))?)
                },
            )
            .join()
            .map_err(|_| "the MSK IAM token signer panicked")
        })?
        .map_err(|e| e as Box<dyn std::error::Error>)?;
        Ok(OAuthToken {
            token,
            principal_name: String::new(),
            lifetime_ms,
        })
    }

    /// A token for a Kafka client that asked for one.
    pub(crate) fn issue(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let token = self.token()?;
        SIGNED.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }
}
