//! MSK IAM authentication, short of an MSK cluster (none runs here): the
//! token is a SigV4-presigned `kafka-cluster:Connect` request for the
//! region, signed with the environment's credentials, and a client set to
//! `AWS_MSK_IAM` asks for one. No request leaves the machine.

use base64::Engine;
use salestrack_kafka::msk_iam::{tokens_issued, MskIam};
use salestrack_kafka::{KafkaBus, KafkaConfig};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default chain's first source; every test sets the same values.
fn environment_credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDSALESTRACKTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "c2FsZXN0cmFjay10ZXN0LXNlY3JldA");
    std::env::set_var("AWS_SESSION_TOKEN", "session-token-of-the-lambda-role");
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

// Inside a Tokio runtime on purpose: consumers ask for tokens from there.
#[tokio::test]
async fn the_token_is_a_presigned_connect_request_for_the_region() {
    environment_credentials();
    let before = now_ms();
    let token = MskIam::new("eu-west-1").token().expect("token");
    let url = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.token)
            .expect("base64url without padding"),
    )
    .expect("utf-8");
    assert!(
        url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"),
        "{url}"
    );
    for part in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=AKIDSALESTRACKTEST%2F",
        "%2Feu-west-1%2Fkafka-cluster%2Faws4_request",
        "X-Amz-Expires=900",
        "X-Amz-Security-Token=session-token-of-the-lambda-role",
        "X-Amz-SignedHeaders=host",
        "User-Agent=",
    ] {
        assert!(url.contains(part), "{part} missing from {url}");
    }
    let signature = url
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Signature="))
        .expect("signature");
    assert!(
        signature.len() == 64 && signature.chars().all(|c| c.is_ascii_hexdigit()),
        "{signature}"
    );
    // Signed now (X-Amz-Date has whole seconds), valid 15 minutes.
    let lifetime = token.lifetime_ms - before;
    assert!(
        (899_000..=905_000).contains(&lifetime),
        "expires in {lifetime} ms"
    );
}

#[tokio::test]
async fn a_client_set_to_msk_iam_signs_its_token_when_it_starts() {
    environment_credentials();
    let signed = tokens_issued();
    let config = KafkaConfig {
        security_protocol: "sasl_plaintext".into(),
        sasl_mechanism: Some("AWS_MSK_IAM".into()),
        aws_region: Some("eu-west-1".into()),
        // Nothing listens there: the client only gets as far as its token.
        ..KafkaConfig::new("127.0.0.1:9")
    };
    let _bus = KafkaBus::connect(config).expect("producer");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokens_issued() == signed && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        tokens_issued() > signed,
        "librdkafka never asked for a token"
    );
}

#[test]
fn msk_iam_without_a_region_is_refused_with_the_setting_to_fix() {
    let config = KafkaConfig {
        security_protocol: "sasl_ssl".into(),
        sasl_mechanism: Some("AWS_MSK_IAM".into()),
        ..KafkaConfig::new("127.0.0.1:9")
    };
    let err = KafkaBus::connect(config)
        .err()
        .expect("no region")
        .to_string();
    assert!(err.contains("SALESTRACK_KAFKA_AWS_REGION"), "{err}");
}
