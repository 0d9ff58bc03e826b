//! Shared by the runner's test binaries: a runner served in-process on a
//! free loopback port, driven over HTTP.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use reqwest::StatusCode;
use salestrack_local_runner::run;
use salestrack_platform::{Backends, Settings};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An HTTP client for one runner.
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

/// A runner served in-process; derefs to its [`Http`] client.
pub struct TestApp {
    pub http: Http,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<std::io::Result<()>>,
    pub backends: Backends,
}

/// Serves `settings` over `backends` on a free loopback port.
pub async fn spawn_with(settings: Settings, backends: Backends) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        salestrack_platform::telemetry::init(salestrack_platform::config::LogFormat::Text);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run(listener, settings, backends.clone(), shutdown.clone()));
    TestApp {
        http: Http::new(&format!("http://{addr}")),
        shutdown,
        server,
        backends,
    }
}

impl std::ops::Deref for TestApp {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl TestApp {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("join").expect("clean stop");
    }
}

impl Http {
    pub fn new(base: &str) -> Http {
        Http {
            base: base.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("post");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("get");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
