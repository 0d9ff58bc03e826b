//! What every salestrack binary shares around the handlers: configuration
//! from the environment, telemetry, the choice of backends behind the ports,
//! and the mapping of errors to HTTP responses.
//!
//! Handlers depend on this crate for wiring only; it holds no business rule.
//!
//! # Layout
//! - [`config`]: `Settings` (all `SALESTRACK_*` variables) and `Topics`.
//! - [`telemetry`]: tracing subscriber set-up.
//! - [`backends`]: opens the backends and hands them out as ports.
//! - [`health`]: dependency checks and the functions' own health routes.
//! - [`http`]: `ApiError`, the one `IntoResponse` for failures.
//! - [`auth`]: bearer JWT authentication (`Access`, `Authenticator`).

pub mod auth;
pub mod backends;
pub mod config;
pub mod health;
pub mod http;
pub mod secrets;
pub mod telemetry;

pub use backends::{Backends, Uses};
pub use config::{
    AuthSettings, CassandraSettings, ConsistencySettings, ElasticsearchSettings, HttpSettings,
    KafkaSettings, LiveSettings, PaymentSettings, ReadySettings, Settings, Topics,
};

/// What every binary does first: read the settings (failing fast on a bad
/// one), install telemetry, open the backends.
/// Logs how long that took: on Lambda it is the cold start's own share of
/// the init phase.
/// `uses` names the ports the binary uses, from its settings: only those
/// are opened.
pub async fn start(
    uses: impl FnOnce(&Settings) -> Uses,
) -> Result<(Settings, Backends), Box<dyn std::error::Error + Send + Sync>> {
    let started = std::time::Instant::now();
    let mut settings = Settings::from_env()?;
    let service = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "salestrack".into());
    telemetry::init_with(
        settings.log_format,
        settings.otlp_endpoint.as_deref(),
        &service,
    );
    secrets::apply(&mut settings).await?;
    let backends = Backends::open(&settings, uses(&settings)).await?;
    tracing::info!(
        init_ms = started.elapsed().as_secs_f64() * 1e3,
        backends = backends.description(),
        "initialised: settings read, clients built"
    );
    Ok((settings, backends))
}
