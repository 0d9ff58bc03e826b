//! The oracle of bearer tokens from outside, shared by the stable proptest
//! run (`crates/platform/tests/jwt.rs`) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/jwt.rs`): an `Authorization` header made of any
//! bytes never panics the authenticator, and is either missing, invalid
//! with a reason, or the very principal of the token it was made from.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use salestrack_platform::auth::{AuthError, Authenticator, Principal};
use salestrack_platform::Settings;
use std::path::{Path, PathBuf};

pub const ISSUER: &str = "https://idp.test/";
pub const AUDIENCE: &str = "salestrack";

/// The committed test keys (local-runner/tests/keys).
pub fn keys_dir(manifest_dir: &Path) -> PathBuf {
    let mut dir = manifest_dir.to_path_buf();
    while !dir.join("local-runner/tests/keys").is_dir() {
        if !dir.pop() {
            break;
        }
    }
    dir.join("local-runner/tests/keys")
}

/// An authenticator over the committed JWKS.
pub async fn authenticator(keys: &Path) -> Authenticator {
    let settings = Settings {
        auth: salestrack_platform::AuthSettings {
            jwks_file: Some(keys.join("jwks.json")),
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            ..Default::default()
        },
        ..Settings::default()
    };
    Authenticator::from_settings(&settings)
        .await
        .expect("the committed JWKS loads")
        .expect("authentication on")
}

/// A valid token of `sub` with `roles`, signed with the committed key `kid`
/// (`rsa-1`, `rsa-2` or `ec-1`), valid for an hour from `now` (seconds).
pub fn signed(keys: &Path, kid: &str, sub: &str, roles: &[&str], now: u64) -> String {
    let pem = std::fs::read(keys.join(format!("{kid}.pem"))).expect("a committed key");
    let (alg, key) = match kid.starts_with("ec") {
        true => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
        false => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = serde_json::json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "nbf": now.saturating_sub(5), "exp": now + 3600,
        "roles": roles,
    });
    jsonwebtoken::encode(&header, &claims, &key.expect("a PEM key")).expect("signs")
}

/// What `header` may authenticate as: `from` are the principals of the
/// tokens the header was made from (none for bytes made up from nothing; a
/// header spliced from two tokens may be either one whole).
pub async fn check(auth: &Authenticator, header: &[u8], from: &[&Principal]) {
    let text = String::from_utf8_lossy(header);
    match auth.authenticate(Some(&text)).await {
        Ok(principal) => assert!(
            from.contains(&&principal),
            "{text:?} authenticated as {principal:?}, not one it was made from: {from:?}"
        ),
        Err(AuthError::Missing) => {}
        Err(AuthError::Invalid(reason)) => {
            assert!(
                !reason.trim().is_empty(),
                "{text:?}: invalid, but no reason"
            )
        }
    }
}
