//! The read-store contract on real Elasticsearch-API servers: OpenSearch
//! 2.19 (the engine itself), noida-db (the Elasticsearch 8.15 API) and
//! osmem-server (an OpenSearch 3 emulator). Every check gets a fresh index
//! prefix on a server shared by the checks of that kind.

use salestrack_core::ports::ReadStore;
use salestrack_elasticsearch::test_server::{store_at, ServerKind, TestSearchServer};
use salestrack_port_tests as contract;
use salestrack_test_engines::{Engine, EngineServer};
use std::sync::{Arc, OnceLock};

/// One server per kind for the whole test binary (None: not installed).
fn server(kind: ServerKind) -> Option<&'static TestSearchServer> {
    static NOIDA: OnceLock<Option<TestSearchServer>> = OnceLock::new();
    static OSMEM: OnceLock<Option<TestSearchServer>> = OnceLock::new();
    let cell = match kind {
        ServerKind::Noida => &NOIDA,
        ServerKind::Osmem => &OSMEM,
    };
    cell.get_or_init(|| TestSearchServer::start(kind)).as_ref()
}

macro_rules! read_store_contract {
    ($($check:ident),* $(,)?) => {
        mod opensearch {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(server) = EngineServer::shared(Engine::OpenSearch) else { return };
                    let store: Arc<dyn ReadStore> = Arc::new(store_at(&server.address()).await);
                    contract::read_store::$check(store).await;
                }
            )*
        }
        mod noida {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(server) = server(ServerKind::Noida) else { return };
                    let store: Arc<dyn ReadStore> = Arc::new(server.store().await);
                    contract::read_store::$check(store).await;
                }
            )*
        }
        mod osmem {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(server) = server(ServerKind::Osmem) else { return };
                    let store: Arc<dyn ReadStore> = Arc::new(server.store().await);
                    contract::read_store::$check(store).await;
                }
            )*
        }
    };
}

read_store_contract!(
    an_upsert_keeps_only_the_newest_version,
    documents_read_back_as_written,
    command_status_keeps_the_first_decision_at_a_version,
    owned_reads_answer_the_owner_only,
    search_filters_by_user_time_currency_and_product_words,
    search_pages_with_a_cursor_without_gaps_or_repeats,
    the_sales_report_sums_exact_money_of_active_lines,
    a_report_without_interval_or_dimension_totals_each_currency,
    a_report_counts_the_lines_of_carts_in_the_status_asked,
    due_checkouts_are_the_carts_checking_out_past_their_deadline,
);
