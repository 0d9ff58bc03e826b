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

    /// Waits (at most 60 s) until the runner answers `/health/ready` with a
    /// success: a runner process just started, or restarted.
    pub async fn wait_until_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self
            .client
            .get(self.url("/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the runner never became ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(self.client.post(self.url(path)).json(body)).await
    }

    /// [`Http::post`] with a bearer token.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// The body of `GET path` as text (`/metrics`).
    pub async fn text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.client.get(self.url(path))).await
    }

    /// [`Http::get`] with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        answer(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    /// `GET path` with a bearer token: the status, the `Consistency`
    /// header and the body.
    pub async fn read_as(&self, token: &str, path: &str) -> (StatusCode, Option<String>, Value) {
        let request = self.client.get(self.url(path)).bearer_auth(token);
        let response = request.send().await.expect("get");
        let status = response.status();
        let consistency = response
            .headers()
            .get("consistency")
            .and_then(|c| c.to_str().ok())
            .map(str::to_owned);
        (
            status,
            consistency,
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

/// Sends `request`: its status and JSON body (`null` when not JSON).
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Settings of a runner over embedded backends in `dir`, polling briskly.
pub fn embedded_settings(dir: &std::path::Path) -> Settings {
    Settings {
        data_dir: dir.into(),
        poll_wait_ms: 20,
        consistency: salestrack_platform::ConsistencySettings {
            wait_ms: 10_000,
            ..Default::default()
        },
        ..Settings::default()
    }
}

/// A runner over embedded backends in `dir`, polling briskly.
pub async fn spawn_embedded(dir: &std::path::Path) -> TestApp {
    let settings = embedded_settings(dir);
    let backends = Backends::connect(&settings).await.expect("backends");
    spawn_with(settings, backends).await
}

/// Posts an order of a new cart under the W3C trace `trace_id` and waits
/// until it is visible; returns the cart id and the `202` body.
pub async fn place_traced_order(
    app: &Http,
    trace_id: &str,
) -> (salestrack_core::ids::CartId, Value) {
    use salestrack_core::ids::{CartId, OrderId};
    let (cart, order) = (CartId(uuid::Uuid::new_v4()), OrderId(uuid::Uuid::new_v4()));
    let response = app
        .client
        .post(app.url("/orders"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&salestrack_core::testing::order_body_for(
            cart, order, "Traced",
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    let token = accepted["consistency_token"].as_str().expect("token");
    let (status, _) = app
        .get(&format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    (cart, accepted)
}

/// Runner settings on the Kafka brokers `brokers`, over embedded stores in
/// `data_dir`, with short waits for tests, and topics and consumer groups of
/// their own: tests share one Apache Kafka per binary.
pub fn kafka_settings(brokers: &str, data_dir: &std::path::Path) -> Settings {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let defaults = Settings::default();
    Settings {
        data_dir: data_dir.into(),
        partitions: 4,
        poll_wait_ms: 50,
        domain_group: format!("{}-{run}", defaults.domain_group),
        projector_group: format!("{}-{run}", defaults.projector_group),
        payment_group: format!("{}-{run}", defaults.payment_group),
        consistency: salestrack_platform::ConsistencySettings {
            wait_ms: 10_000,
            ..defaults.consistency
        },
        kafka: salestrack_platform::KafkaSettings {
            brokers: brokers.to_owned(),
            batch_window_ms: 20,
            ..defaults.kafka
        },
        topics: salestrack_platform::Topics {
            commands: format!("{}-{run}", defaults.topics.commands),
            events: format!("{}-{run}", defaults.topics.events),
            outcomes: format!("{}-{run}", defaults.topics.outcomes),
            dead_letter: format!("{}-{run}", defaults.topics.dead_letter),
            payments: format!("{}-{run}", defaults.topics.payments),
            projections: format!("{}-{run}", defaults.topics.projections),
        },
        ..defaults
    }
}

/// Where the three real engines of a test listen, and the keyspace and
/// index prefix that are the test's own.
pub struct OnEngines<'a> {
    pub kafka: &'a str,
    pub cassandra: &'a str,
    pub keyspace: String,
    pub opensearch: &'a str,
    pub index_prefix: String,
}

/// Runner settings on the three real engines ([`kafka_settings`] for the
/// bus): the event store and ledger on Cassandra, the read models on
/// OpenSearch (one shard, no replica, refreshed before a write answers),
/// reads waiting up to 20 s for their consistency token.
pub fn engine_settings(on: OnEngines<'_>, data_dir: &std::path::Path) -> Settings {
    let base = kafka_settings(on.kafka, data_dir);
    Settings {
        cassandra: salestrack_platform::CassandraSettings {
            contact_points: on.cassandra.to_owned(),
            keyspace: on.keyspace,
            ..base.cassandra
        },
        elasticsearch: salestrack_platform::ElasticsearchSettings {
            url: on.opensearch.to_owned(),
            index_prefix: on.index_prefix,
            refresh: salestrack_platform::config::EsRefresh::WaitFor,
            shards: Some(1),
            replicas: Some(0),
            refresh_interval: Some("50ms".into()),
            ..base.elasticsearch
        },
        consistency: salestrack_platform::ConsistencySettings {
            wait_ms: 20_000,
            ..base.consistency
        },
        ..base
    }
}

/// The Kafka a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum On {
    /// The binary's shared Apache Kafka 4.
    ApacheKafka,
    /// An emulator process of the test's own.
    Emulator(salestrack_kafka::test_broker::BrokerKind),
}

/// A test's brokers; an emulator dies with it.
pub struct Broker {
    /// `127.0.0.1:port`.
    pub brokers: String,
    pub own: Option<salestrack_kafka::test_broker::TestBroker>,
}

/// `None` (having said why) when the broker is not installed and not
/// required.
pub fn broker(on: On) -> Option<Broker> {
    use salestrack_test_engines::{Engine, EngineServer};
    match on {
        On::ApacheKafka => Some(Broker {
            brokers: EngineServer::shared(Engine::Kafka)?.address(),
            own: None,
        }),
        On::Emulator(kind) => {
            let own = salestrack_kafka::test_broker::TestBroker::start(kind)?;
            Some(Broker {
                brokers: own.brokers.clone(),
                own: Some(own),
            })
        }
    }
}
