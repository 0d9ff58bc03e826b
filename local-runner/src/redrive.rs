//! The dead-letter topic, listed and redriven: by `salestrack-redrive` and
//! by the runner's admin API (`GET /admin/dead-letters`,
//! `POST /admin/dead-letters/redrive`, the `admin` role when
//! authentication is on).
//!
//! Listing reads the whole topic with a consumer group of its own that never
//! commits, so it changes nothing. A redrive puts each chosen letter back on
//! its source topic with its key (so the same partition, after anything its
//! cart had before) and headers, plus `salestrack-redriven-from`. Handlers
//! treat a command, event or payment request they already applied as the
//! repeat it is, so a letter redriven twice, or one whose record was
//! meanwhile applied, changes nothing more.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use salestrack_core::ports::{BackendError, BusRecord, Producer};
use salestrack_msk::DeadLetter;
use salestrack_platform::auth::Access;
use salestrack_platform::http::ApiError;
use salestrack_platform::Backends;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The dead-letter topic of a deployment, and how to write to the bus.
#[derive(Clone)]
pub struct DeadLetterTopic {
    pub backends: Backends,
    pub producer: Arc<dyn Producer>,
    pub topic: String,
}

/// One letter as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Listed {
    /// `topic/partition/offset` of the letter: what a redrive names.
    pub id: String,
    /// The consumer that dead-lettered it (`domain`, `projector`, `payment`).
    pub consumer: String,
    pub source_topic: String,
    pub source_partition: i64,
    pub source_offset: i64,
    /// The record's key: its cart.
    pub cart: String,
    pub error: String,
    pub dead_lettered_at: chrono::DateTime<chrono::Utc>,
    pub age_s: i64,
    /// The letter this record was itself redriven from, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven_from: Option<String>,
}

impl Listed {
    fn of(letter: &DeadLetter, now: chrono::DateTime<chrono::Utc>) -> Listed {
        Listed {
            id: letter.id(),
            consumer: letter.stage.clone(),
            source_topic: letter.source_topic.clone(),
            source_partition: letter.source_partition,
            source_offset: letter.source_offset,
            cart: letter.key_text(),
            error: letter.error.clone(),
            dead_lettered_at: letter.at,
            age_s: (now - letter.at).num_seconds().max(0),
            redriven_from: letter
                .headers
                .iter()
                .find(|(k, _)| k == salestrack_msk::dead_letter_headers::REDRIVEN_FROM)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned()),
        }
    }
}

/// What the dead-letter topic holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Listing {
    pub dead_letters: Vec<Listed>,
    /// Records on the topic that are not letters (no salestrack headers).
    pub unreadable: Vec<String>,
}

/// Which letters to redrive.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// Letter ids, as listed.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Every letter of this consumer.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Every letter.
    #[serde(default)]
    pub all: bool,
}

/// A letter put back on its source topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Redriven {
    pub id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a redrive did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("choose letters: `ids`, `consumer` or `all`")]
    NothingChosen,
    #[error("no dead letter {0} (list them with GET /admin/dead-letters)")]
    Unknown(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl DeadLetterTopic {
    /// Every record of the topic, read with a group of its own that never
    /// commits. Bounded: at most 60 s, and done once a poll finds nothing
    /// new after the partitions were assigned.
    async fn records(&self) -> Result<Vec<BusRecord>, BackendError> {
        let group = format!("salestrack-redrive-{}", uuid::Uuid::new_v4().simple());
        let mut consumer = self.backends.consumer(&group, &[&self.topic])?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut records = Vec::new();
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < deadline {
            let got = consumer.poll(500, Duration::from_millis(500)).await?;
            if got.is_empty() {
                // On Kafka nothing comes before the group assigns partitions.
                if consumer.owned_partitions().is_none_or(|n| n > 0) {
                    quiet += 1;
                }
            } else {
                quiet = 0;
                records.extend(got);
            }
        }
        records.sort_by_key(|r| (r.partition, r.offset));
        Ok(records)
    }

    async fn letters(&self) -> Result<(Vec<DeadLetter>, Vec<String>), BackendError> {
        let mut letters = Vec::new();
        let mut unreadable = Vec::new();
        for record in self.records().await? {
            match DeadLetter::read(&record) {
                Ok(letter) => letters.push(letter),
                Err(e) => unreadable.push(e.to_string()),
            }
        }
        Ok((letters, unreadable))
    }

    pub async fn list(&self) -> Result<Listing, BackendError> {
        let now = chrono::Utc::now();
        let (letters, unreadable) = self.letters().await?;
        Ok(Listing {
            dead_letters: letters.iter().map(|l| Listed::of(l, now)).collect(),
            unreadable,
        })
    }

    /// Puts the chosen letters back on their source topics, in the order
    /// they were dead-lettered.
    pub async fn redrive(&self, choice: &Choice) -> Result<Vec<Redriven>, RedriveError> {
        if choice.ids.is_empty() && choice.consumer.is_none() && !choice.all {
            return Err(RedriveError::NothingChosen);
        }
        let (letters, _) = self.letters().await?;
        if let Some(unknown) = choice
            .ids
            .iter()
            .find(|id| !letters.iter().any(|l| &l.id() == *id))
        {
            return Err(RedriveError::Unknown(unknown.clone()));
        }
        let chosen = letters.iter().filter(|l| {
            choice.all
                || choice.ids.contains(&l.id())
                || choice.consumer.as_deref() == Some(l.stage.as_str())
        });
        let mut redriven = Vec::new();
        for letter in chosen {
            let delivery = self.producer.send(letter.redrive()).await?;
            tracing::info!(letter = %letter.id(), topic = %letter.source_topic,
                partition = delivery.partition, offset = delivery.offset, "dead letter redriven");
            metrics::counter!("salestrack_dead_letters_redriven_total").increment(1);
            redriven.push(Redriven {
                id: letter.id(),
                topic: letter.source_topic.clone(),
                partition: delivery.partition,
                offset: delivery.offset,
            });
        }
        Ok(redriven)
    }
}

fn admin_only(access: &Access) -> Result<(), ApiError> {
    match access.is_admin() {
        true => Ok(()),
        false => Err(ApiError::Forbidden(
            "the dead-letter topic needs the `admin` role".into(),
        )),
    }
}

async fn list(
    State(topic): State<DeadLetterTopic>,
    Extension(access): Extension<Access>,
) -> Result<Json<Listing>, ApiError> {
    admin_only(&access)?;
    Ok(Json(topic.list().await?))
}

#[derive(Serialize)]
struct RedriveAnswer {
    redriven: Vec<Redriven>,
}

async fn redrive(
    State(topic): State<DeadLetterTopic>,
    Extension(access): Extension<Access>,
    body: axum::body::Bytes,
) -> Result<Json<RedriveAnswer>, ApiError> {
    admin_only(&access)?;
    let value = salestrack_core::json::parse_strict(&body)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let choice: Choice = serde_json::from_value(value).map_err(|e| ApiError::BadRequest {
        code: "invalid_choice",
        message: e.to_string(),
    })?;
    match topic.redrive(&choice).await {
        Ok(redriven) => Ok(Json(RedriveAnswer { redriven })),
        Err(RedriveError::Backend(e)) => Err(ApiError::Unavailable(e)),
        Err(e @ RedriveError::Unknown(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ RedriveError::NothingChosen) => Err(ApiError::BadRequest {
            code: "invalid_choice",
            message: e.to_string(),
        }),
    }
}

/// `GET /admin/dead-letters` and `POST /admin/dead-letters/redrive`, behind
/// authentication when it is on, for the `admin` role.
pub fn router(
    topic: DeadLetterTopic,
    auth: Option<Arc<salestrack_platform::auth::Authenticator>>,
) -> Router {
    Router::new()
        .route("/admin/dead-letters", get(list))
        .route("/admin/dead-letters/redrive", post(redrive))
        .with_state(topic)
        .layer(axum::middleware::from_fn_with_state(
            auth,
            salestrack_platform::auth::require,
        ))
}
