//! A Lambda function's own credentials, read at start from AWS Secrets
//! Manager through the AWS Parameters and Secrets Lambda Extension (a layer
//! that answers on loopback), instead of sitting in the function's
//! environment, where anyone allowed `lambda:GetFunctionConfiguration`
//! reads them (issue 29).
//!
//! `SALESTRACK_SECRET_ARN` names the function's secret; its role may read
//! that secret only. The secret is a JSON object with any of
//! `cassandra_username`, `cassandra_password` (Amazon Keyspaces
//! service-specific credentials of an IAM user holding the function's own
//! Keyspaces rights) and `elasticsearch_username`, `elasticsearch_password`
//! (an OpenSearch internal user mapped to the function's own role). A key
//! present in the secret overrides the setting of the same name.

use crate::config::{Secret, Settings};
use serde::Deserialize;
use std::time::Duration;

/// What the extension answers for `GET /secretsmanager/get`.
#[derive(Deserialize)]
struct SecretValue {
    #[serde(rename = "SecretString")]
    secret_string: String,
}

/// The credentials a function's secret may hold.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    cassandra_username: Option<String>,
    cassandra_password: Option<String>,
    elasticsearch_username: Option<String>,
    elasticsearch_password: Option<String>,
}

/// Why a function's secret could not be applied; names the secret, never
/// its contents.
#[derive(Debug, thiserror::Error)]
#[error("the secret {arn}: {why}")]
pub struct SecretError {
    arn: String,
    why: String,
}

/// Fills `settings`' credentials from `SALESTRACK_SECRET_ARN`, if set.
pub async fn apply(settings: &mut Settings) -> Result<(), SecretError> {
    let Some(arn) = settings.secret_arn.clone().filter(|a| !a.trim().is_empty()) else {
        return Ok(());
    };
    let error = |why: String| SecretError {
        arn: arn.clone(),
        why,
    };
    let url = format!(
        "http://127.0.0.1:{}/secretsmanager/get",
        settings.secrets_extension_port
    );
    // Lambda sets the token the extension checks: the function's session.
    let token = std::env::var("AWS_SESSION_TOKEN").unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| error(e.to_string()))?;
    let response = client
        .get(&url)
        .query(&[("secretId", arn.as_str())])
        .header("X-Aws-Parameters-Secrets-Token", token)
        .send()
        .await
        .map_err(|e| error(format!("the secrets extension at {url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(error(format!("the secrets extension answered {status}")));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| error(format!("reading the secret value: {e}")))?;
    let value: SecretValue =
        serde_json::from_slice(&body).map_err(|e| error(format!("not a secret value: {e}")))?;
    let credentials: Credentials = serde_json::from_str(&value.secret_string).map_err(|e| {
        error(format!(
            "not a JSON object of cassandra_username, cassandra_password, \
             elasticsearch_username, elasticsearch_password: {e}"
        ))
    })?;
    if let Some(user) = credentials.cassandra_username {
        settings.cassandra.username = Some(user);
    }
    if let Some(password) = credentials.cassandra_password {
        settings.cassandra.password = Some(Secret::new(password));
    }
    if let Some(user) = credentials.elasticsearch_username {
        settings.elasticsearch.username = Some(user);
    }
    if let Some(password) = credentials.elasticsearch_password {
        settings.elasticsearch.password = Some(Secret::new(password));
    }
    tracing::info!(secret = %arn, "credentials read from the function's secret");
    Ok(())
}
