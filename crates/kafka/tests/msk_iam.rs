//! MSK IAM authentication, short of an MSK cluster (none runs here): the
//! token is a SigV4-presigned `kafka-cluster:Connect` request for the
//! region, signed with the environment's credentials, the same signature
//! botocore computes, and a client set to `AWS_MSK_IAM` asks for one. No
//! request leaves the machine.

use base64::Engine;
use salestrack_kafka::msk_iam::{tokens_issued, MskIam};
use salestrack_kafka::{KafkaBus, KafkaConfig};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY_ID: &str = "AKIDSALESTRACKTEST";
const SECRET: &str = "c2FsZXN0cmFjay10ZXN0LXNlY3JldA";
const SESSION: &str = "session-token-of-the-lambda-role";

/// The keys the signer reads (Lambda puts the role's there); every test
/// sets the same values.
fn environment_credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", KEY_ID);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
    std::env::set_var("AWS_SESSION_TOKEN", SESSION);
}

/// The URL a token carries.
fn presigned_url(token: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .expect("base64url without padding"),
    )
    .expect("utf-8")
}

/// The query's parameters, sorted (their order is not signed).
fn parameters(url: &str) -> Vec<String> {
    let (_, query) = url.split_once('?').expect("a query");
    let mut pairs: Vec<String> = query.split('&').map(str::to_owned).collect();
    pairs.sort();
    pairs
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
    let token = MskIam::from_environment("eu-west-1")
        .expect("keys")
        .token()
        .expect("token");
    let url = presigned_url(&token.token);
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

/// A known answer: botocore 1.44.8's `SigV4QueryAuth("kafka-cluster",
/// "eu-west-1", expires=900)` on `GET https://kafka.eu-west-1.amazonaws.com/
/// ?Action=kafka-cluster:Connect` with these keys, its clock set to
/// 2026-12-03T12:00:00Z (the signer the AWS Python MSK library uses).
#[test]
fn the_signature_is_the_one_botocore_computes_for_the_same_request() {
    let keys = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", SESSION),
    ];
    let signer = MskIam::from_variables("eu-west-1", |name| {
        keys.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("keys");
    let at = UNIX_EPOCH + Duration::from_secs(1_796_299_200);
    let token = signer
        .token_at(at + Duration::from_millis(750))
        .expect("token");
    assert_eq!(token.lifetime_ms, (1_796_299_200 + 900) * 1000);
    let url = presigned_url(&token.token);
    assert!(
        url.starts_with("https://kafka.eu-west-1.amazonaws.com/?"),
        "{url}"
    );
    let botocore = "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect\
        &X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDSALESTRACKTEST%2F20261203%2Feu-west-1%2Fkafka-cluster%2Faws4_request\
        &X-Amz-Date=20261203T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
        &X-Amz-Security-Token=session-token-of-the-lambda-role\
        &X-Amz-Signature=7e3fe6ad37bdab03e2730597ec87df53afa4b665dd332c2f4105dfd38c9f3aea";
    let mut expected = parameters(botocore);
    // Unsigned, after the signature, as the AWS MSK signers add it.
    expected.push(format!(
        "User-Agent=salestrack-kafka%2F{}",
        env!("CARGO_PKG_VERSION")
    ));
    expected.sort();
    assert_eq!(parameters(&url), expected);
}

#[test]
fn msk_iam_without_keys_is_refused_naming_the_variables() {
    for missing in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        let err = MskIam::from_variables("eu-west-1", |name| {
            (name != missing).then(|| "k".to_owned())
        })
        .expect_err("a key is missing");
        assert!(
            err.contains("AWS_ACCESS_KEY_ID") && err.contains("AWS_SECRET_ACCESS_KEY"),
            "{err}"
        );
        // Blank counts as missing.
        let blank = MskIam::from_variables("eu-west-1", |name| {
            Some(if name == missing { "  " } else { "k" }.to_owned())
        });
        assert!(blank.is_err(), "a blank {missing} was taken");
    }
    // Long-term keys have no session token.
    let long_term = MskIam::from_variables("eu-west-1", |name| {
        (name != "AWS_SESSION_TOKEN").then(|| "k".to_owned())
    })
    .expect("no session token is fine")
    .token()
    .expect("token");
    assert!(!presigned_url(&long_term.token).contains("X-Amz-Security-Token"));
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
