//! `cargo run --bin salestrack-rebuild`: replays the event store into fresh
//! read-model indices and moves the aliases to them, while the runners keep
//! taking writes. Run it again after an interruption to resume. Needs
//! `SALESTRACK_ELASTICSEARCH_URL` and the event store settings of the runners.

use salestrack_local_runner::rebuild_read_models;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rebuilt = rebuild_read_models().await?;
    println!(
        "rebuilt into generation v{} ({} streams caught up after moving during the rebuild); \
         previous indices kept for a rollback: {}",
        rebuilt.generation,
        rebuilt.caught_up,
        if rebuilt.previous.is_empty() {
            "none".to_owned()
        } else {
            rebuilt.previous.join(", ")
        }
    );
    Ok(())
}
