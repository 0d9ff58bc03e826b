//! The bus contract on Apache Kafka 4 (one broker shared by the binary,
//! each test on its own topic and group) and on the two Kafka-protocol
//! emulators (noida-db and tansu, a broker process per test).

use salestrack_kafka::test_broker::{BrokerKind, TestBroker};
use salestrack_kafka::{KafkaBus, KafkaConfig};
use salestrack_port_tests as contract;
use salestrack_test_engines::{Engine, EngineServer};

struct Setup {
    bus: KafkaBus,
    topic: String,
    group: String,
    _broker: Option<TestBroker>,
}

/// Where a test runs: a broker of its own, or the shared Apache Kafka.
#[derive(Clone, Copy)]
enum On {
    Emulator(BrokerKind),
    ApacheKafka,
}

async fn setup(on: On) -> Option<Setup> {
    let (brokers, broker) = match on {
        On::Emulator(kind) => {
            let broker = TestBroker::start(kind)?;
            (broker.brokers.clone(), Some(broker))
        }
        On::ApacheKafka => (EngineServer::shared(Engine::Kafka)?.address(), None),
    };
    let bus = KafkaBus::connect(KafkaConfig::new(&brokers)).expect("connect");
    let topic = format!("contract-{}", uuid::Uuid::new_v4());
    bus.ensure_topics(&[&topic], 3, 1, 1)
        .await
        .expect("create topic");
    Some(Setup {
        bus,
        topic,
        group: format!("group-{}", uuid::Uuid::new_v4()),
        _broker: broker,
    })
}

impl Setup {
    fn consumer(&self) -> Box<dyn salestrack_core::ports::Consumer> {
        Box::new(
            self.bus
                .consumer(&self.group, &[&self.topic])
                .expect("consumer"),
        )
    }
}

macro_rules! on_broker {
    ($kind:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn records_of_one_key_arrive_in_order() {
            let Some(s) = setup($kind).await else { return };
            contract::bus::records_of_one_key_arrive_in_order(
                &s.bus,
                s.consumer().as_mut(),
                &s.topic,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn uncommitted_records_are_redelivered() {
            let Some(s) = setup($kind).await else { return };
            contract::bus::uncommitted_records_are_redelivered(
                &s.bus,
                s.consumer().as_mut(),
                &s.topic,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_new_group_member_resumes_after_the_last_commit() {
            let Some(s) = setup($kind).await else { return };
            contract::bus::a_new_group_member_resumes_after_the_last_commit(
                &s.bus,
                s.consumer(),
                || s.consumer(),
                &s.topic,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn lag_counts_records_not_yet_committed() {
            let Some(s) = setup($kind).await else { return };
            contract::bus::lag_counts_records_not_yet_committed(
                &s.bus,
                s.consumer().as_mut(),
                &s.topic,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_idle_poll_returns_empty() {
            let Some(s) = setup($kind).await else { return };
            contract::bus::an_idle_poll_returns_empty(s.consumer().as_mut()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn topic_bootstrap_is_idempotent() {
            let Some(s) = setup($kind).await else { return };
            s.bus
                .ensure_topics(&[&s.topic], 3, 1, 1)
                .await
                .expect("a second bootstrap changes nothing");
            s.bus.ping().await.expect("ping");
        }
    };
}

mod apache_kafka {
    use super::*;
    on_broker!(On::ApacheKafka);
}

mod noida {
    use super::*;
    on_broker!(On::Emulator(BrokerKind::Noida));
}

mod tansu {
    use super::*;
    on_broker!(On::Emulator(BrokerKind::Tansu));
}

/// A topic is never created with more in-sync replicas required than it
/// has replicas (no write could ever be acknowledged): refused, saying
/// why, before any broker is asked.
#[tokio::test]
async fn more_in_sync_replicas_than_replicas_is_refused() {
    let bus = KafkaBus::connect(KafkaConfig::new("127.0.0.1:9")).expect("connect");
    let err = bus
        .ensure_topics(&["never-created"], 1, 1, 2)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("min.insync.replicas"), "{err}");
}
