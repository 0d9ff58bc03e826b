//! The error every port returns.

/// A failure of a backend, not the client's fault. Usually infrastructure and
/// worth retrying; `permanent` when the backend refused the data itself (a
/// document its mapping rejects), which no redelivery can fix.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
    pub permanent: bool,
}

impl BackendError {
    pub fn new(backend: &'static str, error: impl std::fmt::Display) -> Self {
        BackendError {
            backend,
            message: error.to_string(),
            permanent: false,
        }
    }

    /// The backend refused the data: retrying the same write cannot succeed.
    pub fn refused(backend: &'static str, error: impl std::fmt::Display) -> Self {
        BackendError {
            permanent: true,
            ..BackendError::new(backend, error)
        }
    }
}
