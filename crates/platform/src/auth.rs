//! Bearer JWT authentication: who a request is, checked once at the edge of
//! the command and query routes.
//!
//! On when a JWKS is configured (`SALESTRACK_AUTH_JWKS_URL` or
//! `SALESTRACK_AUTH_JWKS_FILE`), with the issuer and audience every token
//! must name. Tokens are RS256 or ES256, signed by a key of the JWKS found by
//! the token's `kid`; `alg: none`, HMAC algorithms (whose secret would be a
//! public key) and any other algorithm are refused, and so is a key whose
//! type does not fit the token's algorithm. Expiry and not-before are checked
//! with a small leeway. A JWKS URL is fetched at start and again when a token
//! names a `kid` it does not hold (key rotation), at most once per
//! `SALESTRACK_AUTH_JWKS_MIN_REFRESH_S`.

use crate::config::Settings;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// What a request may see: everything (authentication off), or what one
/// user owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Open,
    User(Principal),
}

impl Access {
    /// The user whose data alone this request may see; `None`: anyone's.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Access::Open => None,
            Access::User(p) => Some(&p.sub),
        }
    }

    /// May see reports over every user's sales.
    pub fn is_admin(&self) -> bool {
        match self {
            Access::Open => true,
            Access::User(p) => p.roles.iter().any(|r| r == "admin"),
        }
    }
}

/// An authenticated user: the token's subject and roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub sub: String,
    pub roles: Vec<String>,
}

/// Why a request is not authenticated; the message goes back in
/// `WWW-Authenticate`, so it never echoes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token (send `Authorization: Bearer <token>`)")]
    Missing,
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// Settings that make no sense, or a JWKS that cannot be read at start.
#[derive(Debug, thiserror::Error)]
#[error("authentication: {0}")]
pub struct AuthConfigError(String);

enum KeySource {
    Url {
        url: String,
        client: reqwest::Client,
    },
    File(PathBuf),
}

struct Keys {
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
    fetched: Instant,
}

/// Validates bearer tokens against the configured JWKS.
pub struct Authenticator {
    source: Arc<KeySource>,
    keys: Arc<RwLock<Keys>>,
    /// Held by the one refresh of the JWKS in flight (never `keys`'s lock:
    /// a request whose key is known never waits for a fetch).
    refreshing: Arc<tokio::sync::Mutex<()>>,
    min_refresh: Duration,
    /// Keys older than this are fetched again in the background, so that a
    /// key the provider withdrew stops being trusted.
    max_age: Duration,
    issuer: String,
    audience: String,
    leeway: Duration,
    roles_claim: String,
}

/// The algorithms salestrack accepts, by the key type that must carry them.
fn algorithm_of(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec)
            if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
        {
            Some(Algorithm::ES256)
        }
        _ => None,
    }
}

/// The usable keys of a JWKS document: RSA and P-256 keys with a `kid`;
/// others are skipped (and said so in the log).
fn parse_jwks(text: &str) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let (Some(kid), Some(alg)) = (&jwk.common.key_id, algorithm_of(&jwk.algorithm)) else {
            tracing::warn!(kid = ?jwk.common.key_id, "JWKS key skipped: no kid, or neither RSA nor P-256");
            continue;
        };
        // RFC 7517: `use` says what the key is for, `alg` the one algorithm
        // it may be used with; a key for encryption, or for another
        // algorithm, never verifies a signature here.
        if let Some(usage) = jwk.common.public_key_use.as_ref() {
            if *usage != PublicKeyUse::Signature {
                tracing::warn!(%kid, ?usage, "JWKS key skipped: not for signatures (`use`)");
                continue;
            }
        }
        if let Some(named) = jwk.common.key_algorithm {
            let fits = matches!(
                (named, alg),
                (KeyAlgorithm::RS256, Algorithm::RS256) | (KeyAlgorithm::ES256, Algorithm::ES256)
            );
            if !fits {
                tracing::warn!(%kid, ?named, "JWKS key skipped: its `alg` is not RS256 / ES256 for its type");
                continue;
            }
        }
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid.clone(), (alg, key));
            }
            Err(e) => tracing::warn!(%kid, error = %e, "JWKS key skipped"),
        }
    }
    Ok(keys)
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(flatten)]
    rest: HashMap<String, serde_json::Value>,
}

impl Authenticator {
    /// `None` when no JWKS is configured (authentication off). With one,
    /// the issuer and audience are required, and the keys are loaded now.
    pub async fn from_settings(
        settings: &Settings,
    ) -> Result<Option<Authenticator>, AuthConfigError> {
        // Empty counts as unset (a deployment template passes "" for "off").
        let url = settings
            .auth
            .jwks_url
            .as_ref()
            .filter(|u| !u.trim().is_empty());
        let file = settings
            .auth
            .jwks_file
            .as_ref()
            .filter(|f| !f.as_os_str().is_empty());
        let source = match (url, file) {
            (None, None) => {
                // Said by every binary that serves routes (the runner, the
                // command and query Lambdas), once at start.
                tracing::warn!(
                    "bearer-token authentication is off: every route is open to any caller \
                     that reaches this process (on Lambda, only the function URL's IAM \
                     signature guards it); SALESTRACK_AUTH_JWKS_URL or \
                     SALESTRACK_AUTH_JWKS_FILE turns it on"
                );
                return Ok(None);
            }
            (Some(_), Some(_)) => {
                return Err(AuthConfigError(
                    "set SALESTRACK_AUTH_JWKS_URL or SALESTRACK_AUTH_JWKS_FILE, not both".into(),
                ))
            }
            (Some(url), None) => KeySource::Url {
                url: url.clone(),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| AuthConfigError(e.to_string()))?,
            },
            (None, Some(file)) => KeySource::File(file.clone()),
        };
        let required = |value: &Option<String>, name: &str| {
            value
                .clone()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| AuthConfigError(format!("{name} is required with a JWKS")))
        };
        let issuer = required(&settings.auth.issuer, "SALESTRACK_AUTH_ISSUER")?;
        let audience = required(&settings.auth.audience, "SALESTRACK_AUTH_AUDIENCE")?;
        let by_kid = source.load().await.map_err(AuthConfigError)?;
        Ok(Some(Authenticator {
            source: Arc::new(source),
            keys: Arc::new(RwLock::new(Keys {
                by_kid,
                fetched: Instant::now(),
            })),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
            min_refresh: Duration::from_secs(settings.auth.jwks_min_refresh_s),
            max_age: Duration::from_secs(settings.auth.jwks_max_age_s.max(1)),
            issuer,
            audience,
            leeway: Duration::from_secs(settings.auth.leeway_s),
            roles_claim: settings.auth.roles_claim.clone(),
        }))
    }

    /// Who sent `authorization` (the header's value, if any).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|h| {
                let (scheme, token) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("unreadable header: {e}")))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted (RS256, ES256)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("the header names no key (`kid`)".into()))?;
        let (alg, key) = self.key(&kid).await?;
        if alg != header.alg {
            return Err(AuthError::Invalid(format!(
                "key {kid} is for {alg:?}, the token says {:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let roles = match data.claims.rest.get(&self.roles_claim) {
            Some(serde_json::Value::Array(roles)) => roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(roles)) => {
                roles.split_whitespace().map(str::to_owned).collect()
            }
            _ => Vec::new(),
        };
        if data.claims.sub.trim().is_empty() {
            return Err(AuthError::Invalid("the subject (`sub`) is empty".into()));
        }
        Ok(Principal {
            sub: data.claims.sub,
            roles,
        })
    }

    /// The key named `kid`, fetching the JWKS again (at most once per
    /// `min_refresh`) when it is not known: a provider rotating its keys.
    /// One fetch at a time, and no lock on the keys held across it: a
    /// request whose key is known is served at once even while a token
    /// with an unknown `kid` (anyone can forge one) waits for the fetch.
    async fn key(&self, kid: &str) -> Result<(Algorithm, DecodingKey), AuthError> {
        {
            let keys = self.keys.read().await;
            if let Some(found) = keys.by_kid.get(kid) {
                if keys.fetched.elapsed() >= self.max_age {
                    self.refresh_in_background();
                }
                return Ok(found.clone());
            }
        }
        let unknown = || AuthError::Invalid(format!("no key `{kid}` in the JWKS"));
        let _refresh = self.refreshing.lock().await;
        // What a refresh that finished meanwhile brought, else a fetch of
        // our own within the rate limit.
        if let Some(found) = self.keys.read().await.by_kid.get(kid) {
            return Ok(found.clone());
        }
        refresh(&self.keys, &self.source, self.min_refresh).await;
        self.keys
            .read()
            .await
            .by_kid
            .get(kid)
            .cloned()
            .ok_or_else(unknown)
    }
}

impl Authenticator {
    /// Fetches the JWKS again in a task of its own, unless a fetch is in
    /// flight: the request that noticed the keys' age is served with the
    /// keys held, and a key the new set lacks is no longer trusted.
    fn refresh_in_background(&self) {
        let Ok(turn) = Arc::clone(&self.refreshing).try_lock_owned() else {
            return;
        };
        let (keys, source, max_age) = (
            Arc::clone(&self.keys),
            Arc::clone(&self.source),
            self.max_age,
        );
        tokio::spawn(async move {
            let _turn = turn;
            refresh(&keys, &source, max_age).await;
        });
    }
}

/// Fetches the JWKS and replaces the keys held, if they were fetched at
/// least `older_than` ago; a failed fetch keeps them. The caller holds the
/// `refreshing` turn: one fetch at a time, and never the keys' lock across it.
async fn refresh(keys: &RwLock<Keys>, source: &KeySource, older_than: Duration) {
    {
        let mut keys = keys.write().await;
        if keys.fetched.elapsed() < older_than {
            return;
        }
        keys.fetched = Instant::now();
    }
    match source.load().await {
        Ok(by_kid) => {
            metrics::counter!("salestrack_auth_jwks_refreshes_total").increment(1);
            keys.write().await.by_kid = by_kid;
        }
        Err(e) => {
            tracing::warn!(error = %e, "refreshing the JWKS failed; keeping the keys held");
        }
    }
}

impl KeySource {
    async fn load(&self) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
        let text = match self {
            KeySource::Url { url, client } => client
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("fetching the JWKS from {url}: {e}"))?
                .text()
                .await
                .map_err(|e| format!("reading the JWKS from {url}: {e}"))?,
            KeySource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("reading the JWKS {}: {e}", path.display()))?,
        };
        let keys = parse_jwks(&text)?;
        if keys.is_empty() {
            return Err("the JWKS holds no RSA or P-256 key with a kid".into());
        }
        Ok(keys)
    }
}

/// Axum middleware for the API routes: authenticates the request through
/// `auth` (`Access::Open` when authentication is off) and hands the
/// handlers its [`Access`] as a request extension. A missing or invalid
/// token is answered `401` with `WWW-Authenticate` before any handler runs.
pub async fn require(
    axum::extract::State(auth): axum::extract::State<Option<std::sync::Arc<Authenticator>>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let access = match auth.as_deref() {
        None => Access::Open,
        Some(auth) => {
            let header = request
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match auth.authenticate(header).await {
                Ok(principal) => Access::User(principal),
                Err(e) => {
                    metrics::counter!("salestrack_auth_refused_total").increment(1);
                    return crate::http::ApiError::from(e).into_response();
                }
            }
        }
    };
    request.extensions_mut().insert(access);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            auth: crate::AuthSettings {
                issuer: Some("https://idp.test/".into()),
                audience: Some("salestrack".into()),
                ..Default::default()
            },
            ..Settings::default()
        }
    }

    #[tokio::test]
    async fn no_jwks_means_authentication_off() {
        assert!(Authenticator::from_settings(&settings())
            .await
            .expect("fine")
            .is_none());
        let empty = {
            let base = settings();
            Settings {
                auth: crate::AuthSettings {
                    jwks_url: Some(String::new()),
                    ..base.auth
                },
                ..base
            }
        };
        assert!(Authenticator::from_settings(&empty)
            .await
            .expect("empty is unset")
            .is_none());
    }

    #[tokio::test]
    async fn a_jwks_without_issuer_or_audience_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, r#"{"keys":[]}"#).expect("write");
        let no_issuer = {
            let base = settings();
            Settings {
                auth: crate::AuthSettings {
                    jwks_file: Some(file.clone()),
                    issuer: None,
                    ..base.auth
                },
                ..base
            }
        };
        let err = Authenticator::from_settings(&no_issuer)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("SALESTRACK_AUTH_ISSUER"), "{err}");
        let no_usable_key = {
            let base = settings();
            Settings {
                auth: crate::AuthSettings {
                    jwks_file: Some(file),
                    ..base.auth
                },
                ..base
            }
        };
        let err = Authenticator::from_settings(&no_usable_key)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no RSA or P-256 key"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_or_non_bearer_header_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("jwks.json");
        let jwks = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../local-runner/tests/keys/jwks.json"),
        )
        .expect("test keys");
        std::fs::write(&file, jwks).expect("write");
        let auth = Authenticator::from_settings(&{
            let base = settings();
            Settings {
                auth: crate::AuthSettings {
                    jwks_file: Some(file),
                    ..base.auth
                },
                ..base
            }
        })
        .await
        .expect("ok")
        .expect("on");
        for header in [None, Some(""), Some("Basic dXNlcjpwdw=="), Some("Bearer ")] {
            assert_eq!(
                auth.authenticate(header).await,
                Err(AuthError::Missing),
                "{header:?}"
            );
        }
    }
}
