//! The error every port returns.

/// The driver's own error beneath a [`BackendError`].
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of a backend, not the client's fault. Usually infrastructure and
/// worth retrying; `permanent` when the backend refused the data itself (a
/// document its mapping rejects), which no redelivery can fix. Keeps the
/// driver's error it came from, when there is one, as its
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
    pub permanent: bool,
    #[source]
    pub source: Option<Source>,
}

impl BackendError {
    /// A failure the backend's own words describe, with no error beneath.
    pub fn new(backend: &'static str, error: impl std::fmt::Display) -> Self {
        BackendError {
            backend,
            message: error.to_string(),
            permanent: false,
            source: None,
        }
    }

    /// A driver's `error`, kept as the source: the message is its text.
    pub fn caused_by<E>(backend: &'static str, error: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        BackendError {
            backend,
            message: error.to_string(),
            permanent: false,
            source: Some(Box::new(error)),
        }
    }

    /// A driver's `error` while doing `what`, kept as the source.
    pub fn context<E>(backend: &'static str, what: impl std::fmt::Display, error: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        BackendError {
            backend,
            message: format!("{what}: {error}"),
            permanent: false,
            source: Some(Box::new(error)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_drivers_error_stays_reachable_beneath_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = BackendError::context("kafka", "produce to t", io);
        assert_eq!(e.to_string(), "kafka: produce to t: refused");
        let source = e.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io error itself");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);

        let plain = BackendError::caused_by("kafka", std::fmt::Error);
        assert_eq!(
            plain.to_string(),
            "kafka: an error occurred when formatting an argument"
        );
        assert!(plain.source().is_some());
        assert!(BackendError::new("kafka", "down").source().is_none());
    }
}
