//! `salestrack-redrive`: lists what the dead-letter topic holds, and puts
//! chosen letters back on their source topics. Reads the same
//! `SALESTRACK_*` settings as the runner (the bus, the dead-letter topic).
//!
//! ```text
//! salestrack-redrive [list] [--json]
//! salestrack-redrive redrive ID...          # ids as listed: topic/partition/offset
//! salestrack-redrive redrive --consumer domain
//! salestrack-redrive redrive --all
//! ```

use salestrack_local_runner::redrive::{Choice, DeadLetterTopic};
use salestrack_platform::{Backends, Settings, Uses};

const USAGE: &str = "usage: salestrack-redrive [list] [--json]\n       \
                     salestrack-redrive redrive (ID... | --consumer NAME | --all)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = Settings::from_env()?;
    let backends = Backends::open(
        &settings,
        Uses {
            bus: true,
            ..Uses::NOTHING
        },
    )
    .await?;
    let topic = DeadLetterTopic {
        producer: backends.producer()?,
        backends,
        topic: settings.topics.dead_letter.clone(),
    };
    match args.first().map(String::as_str) {
        None | Some("list" | "--json") => {
            let listing = topic.list().await?;
            if args.iter().any(|a| a == "--json") {
                println!("{}", serde_json::to_string_pretty(&listing)?);
                return Ok(());
            }
            println!(
                "{} dead letter(s) on {}",
                listing.dead_letters.len(),
                settings.topics.dead_letter
            );
            for l in &listing.dead_letters {
                println!(
                    "{}  consumer={} source={}-{}@{} cart={} age={}s{}\n    error: {}",
                    l.id,
                    l.consumer,
                    l.source_topic,
                    l.source_partition,
                    l.source_offset,
                    l.cart,
                    l.age_s,
                    l.redriven_from
                        .as_deref()
                        .map(|f| format!(" (redriven from {f})"))
                        .unwrap_or_default(),
                    l.error
                );
            }
            for u in &listing.unreadable {
                println!("unreadable: {u}");
            }
        }
        Some("redrive") => {
            let rest = &args[1..];
            let choice = match rest {
                [flag] if flag == "--all" => Choice {
                    all: true,
                    ..Choice::default()
                },
                [flag, name] if flag == "--consumer" => Choice {
                    consumer: Some(name.clone()),
                    ..Choice::default()
                },
                ids if !ids.is_empty() && ids.iter().all(|i| !i.starts_with("--")) => Choice {
                    ids: ids.to_vec(),
                    ..Choice::default()
                },
                _ => anyhow::bail!("{USAGE}"),
            };
            for r in topic.redrive(&choice).await? {
                println!("{} -> {}-{}@{}", r.id, r.topic, r.partition, r.offset);
            }
        }
        Some(_) => anyhow::bail!("{USAGE}"),
    }
    Ok(())
}
