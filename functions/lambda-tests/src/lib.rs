//! Nothing but tests: see `tests/cargo_lambda_watch.rs`.
