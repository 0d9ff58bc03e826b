//! A Lambda function's credentials from its own secret, through the AWS
//! Parameters and Secrets Lambda Extension. The extension here is a forged
//! one on loopback that answers as the extension's documentation says
//! (`GET /secretsmanager/get?secretId=…` with the session token in
//! `X-Aws-Parameters-Secrets-Token`, the `GetSecretValue` JSON back); the
//! real one is not run here.

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use salestrack_platform::{secrets, Settings};
use serde_json::{json, Value};
use std::collections::HashMap;

const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:salestrack-query-AbCdEf";

/// An extension answering `secret` for [`ARN`] to a caller with a token.
async fn extension(secret: Value) -> u16 {
    let app = axum::Router::new().route(
        "/secretsmanager/get",
        get(move |Query(q): Query<HashMap<String, String>>, headers: HeaderMap| {
            let secret = secret.clone();
            async move {
                if !headers.contains_key("x-aws-parameters-secrets-token") {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                if q.get("secretId").map(String::as_str) != Some(ARN) {
                    return (StatusCode::BAD_REQUEST, "no such secret".into());
                }
                let value = json!({ "ARN": ARN, "Name": "salestrack-query", "SecretString": secret.to_string() });
                (StatusCode::OK, value.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

fn settings(port: u16, arn: &str) -> Settings {
    Settings {
        secret_arn: Some(arn.into()),
        secrets_extension_port: port,
        cassandra: salestrack_platform::CassandraSettings {
            username: Some("from-the-environment".into()),
            ..Default::default()
        },
        ..Settings::default()
    }
}

#[tokio::test]
async fn the_functions_secret_fills_its_credentials() {
    let port = extension(json!({
        "cassandra_username": "salestrack-query-at-123456789012",
        "cassandra_password": "keyspaces-password",
        "elasticsearch_username": "salestrack-query",
        "elasticsearch_password": "opensearch-password",
    }))
    .await;
    let mut settings = settings(port, ARN);
    secrets::apply(&mut settings).await.expect("applied");
    assert_eq!(
        settings.cassandra.username.as_deref(),
        Some("salestrack-query-at-123456789012")
    );
    assert_eq!(
        settings.cassandra.password.as_ref().map(|s| s.expose()),
        Some("keyspaces-password")
    );
    assert_eq!(
        settings.elasticsearch.username.as_deref(),
        Some("salestrack-query")
    );
    assert_eq!(
        settings.elasticsearch.password.as_ref().map(|s| s.expose()),
        Some("opensearch-password")
    );
}

#[tokio::test]
async fn a_secret_that_cannot_be_applied_stops_the_start_naming_it_not_its_contents() {
    let port = extension(json!({ "cassandra_password": "hunter2", "admin": true })).await;
    let mut unknown_key = settings(port, ARN);
    let error = secrets::apply(&mut unknown_key)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains(ARN) && error.contains("admin"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    let other = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:someone-else";
    let mut not_found = settings(port, other);
    let error = secrets::apply(&mut not_found)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("400"), "{error}");
    assert_eq!(
        not_found.cassandra.username.as_deref(),
        Some("from-the-environment")
    );
}

#[tokio::test]
async fn without_a_secret_nothing_is_fetched() {
    let mut settings = Settings::default();
    secrets::apply(&mut settings).await.expect("nothing to do");
    assert_eq!(settings.cassandra.username, None);
}
