//! Live cart updates: `GET /carts/{cart_id}/live` as Server-Sent Events.
//!
//! Each event is the cart detail at one stream version (`id:` the version,
//! `event: cart`), sent once the read models hold that version or a later
//! one, so a client that reads after an event sees at least what it was
//! told. Versions come in order and none is skipped: when the read models
//! jumped several versions at once (one projector batch), the versions in
//! between are folded from the event store's read path by the projector's
//! own fold. `Last-Event-ID` resumes after that version.
//!
//! Where changes come from: every query process holds a [`Live`] hub that
//! is told "cart X is projected up to N" ([`Live::notify`]): in memory by a
//! projector in the same process, or by the runner's follower of the
//! projection topic that every projector publishes to. Besides, each stream
//! looks at the read store every `poll` (a lost notice only delays it; on
//! Lambda, which follows no topic, it is the only source).
//!
//! Bounds: at most `max_streams` streams (beyond, `503` with `Retry-After`);
//! per stream at most `buffer` events wait for the client, and a client that
//! takes none for `slow_after` while one waits is dropped; notices coalesce
//! (a stream only ever needs the newest), so nothing grows with a slow
//! reader; a resume folds and sends the versions it missed one at a time,
//! so nothing grows with a cart's history either. Streams end, with an
//! `end` event saying why, on shutdown and after `max_lifetime` when set
//! (Lambda): the client reconnects with `Last-Event-ID`, as `EventSource`
//! does by itself.

use crate::params::{self, Given};
use crate::{path_id, QueryState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::Stream;
use salestrack_core::ids::CartId;
use salestrack_core::ports::{BackendError, ProjectionFeed};
use salestrack_core::read_model::CartDetail;
use salestrack_core::wire::CartProjected;
use salestrack_platform::auth::Access;
use salestrack_platform::http::{ApiError, ErrorBody};
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Notices a cart's channel keeps for streams that have not read them yet;
/// a stream that misses some reads the newest state anyway.
const NOTICES_PER_CART: usize = 64;

/// Events read from the event store at a time while a stream folds the
/// versions a client missed.
const FOLD_PAGE: u64 = 128;

/// What a client waits before reconnecting after a stream ends (`retry:`).
const RECONNECT_MS: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub max_streams: usize,
    pub heartbeat: Duration,
    pub poll: Duration,
    pub buffer: usize,
    pub slow_after: Duration,
    pub max_lifetime: Option<Duration>,
}

impl LiveConfig {
    pub fn from_settings(s: &salestrack_platform::Settings) -> LiveConfig {
        LiveConfig {
            max_streams: s.live.max_streams,
            heartbeat: Duration::from_millis(s.live.heartbeat_ms.max(100)),
            poll: Duration::from_millis(s.live.poll_ms.max(10)),
            buffer: s.live.buffer.max(1),
            slow_after: Duration::from_millis(s.live.slow_ms.max(10)),
            max_lifetime: (s.live.max_lifetime_s > 0)
                .then(|| Duration::from_secs(s.live.max_lifetime_s)),
        }
    }
}

/// The hub of one process's live streams.
pub struct Live {
    config: LiveConfig,
    slots: Arc<Semaphore>,
    carts: Mutex<HashMap<CartId, broadcast::Sender<u64>>>,
    closing: CancellationToken,
}

impl Live {
    /// Streams end when `closing` is cancelled (the process shuts down).
    pub fn new(config: LiveConfig, closing: CancellationToken) -> Arc<Live> {
        Arc::new(Live {
            slots: Arc::new(Semaphore::new(config.max_streams)),
            config,
            carts: Mutex::new(HashMap::new()),
            closing,
        })
    }

    /// Cart `cart_id`'s read models reached `version`: wakes its streams.
    /// Costs a map look-up when nobody watches the cart.
    pub fn notify(&self, cart_id: CartId, version: u64) {
        let carts = self.carts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = carts.get(&cart_id) {
            // No receiver left: the last stream is going away.
            let _ = sender.send(version);
        }
    }

    fn subscribe(self: &Arc<Self>, cart_id: CartId) -> Notices {
        let mut carts = self.carts.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = carts
            .entry(cart_id)
            .or_insert_with(|| broadcast::channel(NOTICES_PER_CART).0)
            .subscribe();
        Notices {
            live: Arc::clone(self),
            cart_id,
            receiver,
        }
    }
}

#[async_trait::async_trait]
impl ProjectionFeed for Live {
    async fn publish(&self, notices: &[CartProjected]) -> Result<(), BackendError> {
        for n in notices {
            self.notify(n.cart_id, n.version);
        }
        Ok(())
    }
}

/// One stream's notices; the cart's channel goes with its last stream.
struct Notices {
    live: Arc<Live>,
    cart_id: CartId,
    receiver: broadcast::Receiver<u64>,
}

impl Drop for Notices {
    fn drop(&mut self) {
        let mut carts = self.live.carts.lock().unwrap_or_else(|e| e.into_inner());
        // This receiver still counts until the fields drop.
        if carts
            .get(&self.cart_id)
            .is_some_and(|s| s.receiver_count() <= 1)
        {
            carts.remove(&self.cart_id);
        }
    }
}

/// Why a stream ended, in its `end` event and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Shutdown,
    Lifetime,
    /// The client took no event for `slow_after`.
    SlowClient,
    /// The client went away.
    Gone,
    /// The read store failed: the client should reconnect.
    Backend,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Shutdown => "shutdown",
            End::Lifetime => "lifetime",
            End::SlowClient => "slow_client",
            End::Gone => "client_gone",
            End::Backend => "backend",
        }
    }
}

type Events = mpsc::Receiver<Result<Event, Infallible>>;

/// The response body's events; holds the stream's slot until the response
/// is dropped, so connections a stuck client keeps open still count.
struct Body {
    events: Events,
    _slot: OwnedSemaphorePermit,
}

impl Stream for Body {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

/// The `Last-Event-ID` a reconnecting client sends: the version it has.
fn last_event_id(headers: &HeaderMap) -> Result<u64, ApiError> {
    let given = Given::new(params::live::ALL, &[], headers)?;
    match given.integer(&params::live::LAST_EVENT_ID) {
        Ok(version) => Ok(version.unwrap_or(0)),
        Err(_) => Err(ApiError::bad_request(
            "invalid_last_event_id",
            "`Last-Event-ID` must be a stream version this API sent: an integer from 0",
        )),
    }
}

/// Live updates of one cart.
#[utoipa::path(
    get, path = "/carts/{cart_id}/live", tag = "queries",
    params(
        ("cart_id" = String, Path, format = Uuid),
        params::LiveParams,
    ),
    responses(
        (status = 200, content_type = "text/event-stream", description = "Server-Sent Events: `event: cart` with `id:` the stream version and `data:` the cart detail (`CartDetail`), one per version in order; comment lines as heartbeats; a last `event: end` with `data: {\"reason\": …}` (`shutdown`, `lifetime`) before the server ends the stream: reconnect with `Last-Event-ID`"),
        (status = 400, description = "Malformed cart id or `Last-Event-ID`", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody),
        (status = 404, description = "No such cart, or not the caller's", body = ErrorBody),
        (status = 503, description = "As many streams open as allowed (`Retry-After` says when to try again), or backend unavailable", body = ErrorBody),
    )
)]
pub async fn live_cart(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Path(cart_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cart_id: CartId = path_id(&cart_id, "cart id")?;
    let after = last_event_id(&headers)?;
    let live = Arc::clone(&state.live);
    let Ok(slot) = Arc::clone(&live.slots).try_acquire_owned() else {
        metrics::counter!("salestrack_live_refused_total").increment(1);
        return Err(ApiError::TooManyStreams);
    };
    // Subscribed before the first read, so no change slips in between.
    let notices = live.subscribe(cart_id);
    let current = state
        .visible_detail(cart_id, &access)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cart {cart_id}")))?;
    let (sender, events) = mpsc::channel(live.config.buffer);
    let heartbeat = live.config.heartbeat;
    let stream = Streamer {
        state,
        access,
        cart_id,
        sent: after,
        last: None,
        sender,
    };
    tokio::spawn(stream.run(current, notices));
    metrics::counter!("salestrack_live_streams_total").increment(1);
    let body = Body {
        events,
        _slot: slot,
    };
    let mut response = Sse::new(body)
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response();
    // Proxies must pass events on at once.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The task behind one stream.
struct Streamer {
    state: QueryState,
    access: Access,
    cart_id: CartId,
    /// The newest version the client has.
    sent: u64,
    /// The detail at `sent`, once this stream sent it.
    last: Option<CartDetail>,
    sender: mpsc::Sender<Result<Event, Infallible>>,
}

impl Streamer {
    async fn run(mut self, current: CartDetail, mut notices: Notices) {
        let live = Arc::clone(&self.state.live);
        let config = live.config.clone();
        metrics::gauge!("salestrack_live_streams").increment(1.0);
        let deadline = config.max_lifetime.map(|d| Instant::now() + d);
        let mut poll = tokio::time::interval_at(Instant::now() + config.poll, config.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut newest = Some(current);
        let end = loop {
            if let Some(detail) = newest.take() {
                if let Err(end) = self.catch_up(detail, &config).await {
                    break end;
                }
            }
            let wanted = tokio::select! {
                biased;
                () = live.closing.cancelled() => break End::Shutdown,
                () = self.sender.closed() => break End::Gone,
                () = sleep_until(deadline) => break End::Lifetime,
                notice = notices.receiver.recv() => match notice {
                    Ok(version) => version > self.sent,
                    // Missed notices: the newest state covers them.
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => break End::Shutdown,
                },
                _ = poll.tick() => true,
            };
            if wanted {
                match self.state.visible_detail(self.cart_id, &self.access).await {
                    Ok(detail) => newest = detail,
                    Err(e) => {
                        tracing::warn!(cart_id = %self.cart_id, error = %e, "a live stream could not read its cart; ending it");
                        break End::Backend;
                    }
                }
            }
        };
        if matches!(end, End::Shutdown | End::Lifetime | End::Backend) {
            let data = serde_json::json!({ "reason": end.as_str() }).to_string();
            let _ = self
                .sender
                .try_send(Ok(Event::default().event("end").data(data)));
        }
        metrics::gauge!("salestrack_live_streams").decrement(1.0);
        metrics::counter!("salestrack_live_ended_total", "reason" => end.as_str()).increment(1);
        drop(notices);
    }

    /// Sends every version after `sent` up to `newest`, in order.
    async fn catch_up(&mut self, newest: CartDetail, config: &LiveConfig) -> Result<(), End> {
        if newest.version <= self.sent {
            return Ok(());
        }
        // A fresh subscriber wants the current state only; a resumed or
        // running one every version it has not seen.
        if self.sent > 0 && newest.version > self.sent + 1 {
            if let Err(e) = self.send_between(newest.version, config).await? {
                tracing::warn!(cart_id = %self.cart_id, error = %e,
                    "the versions between could not be folded from the event store; sending the newest only");
            }
        }
        self.send(newest, config).await
    }

    /// Sends the details after `sent` and before `before`, folded from the
    /// event store onto the last one sent (or from the stream's start).
    ///
    /// One version at a time, as it is folded: what a resume holds is one
    /// detail, one page of events and the channel's `buffer` of events,
    /// whatever the length of the history it replays.
    async fn send_between(
        &mut self,
        before: u64,
        config: &LiveConfig,
    ) -> Result<Result<(), BackendError>, End> {
        let store = Arc::clone(&self.state.event_store);
        let (mut detail, mut from) = match self.last.take() {
            Some(last) => (Some(last), self.sent + 1),
            None => (None, 1),
        };
        while from < before {
            let to = (from + FOLD_PAGE - 1).min(before - 1);
            let events = match store.read_range(self.cart_id, from..=to).await {
                Ok(events) => events,
                Err(e) => {
                    self.last = detail.filter(|d| d.version == self.sent);
                    return Ok(Err(e));
                }
            };
            if events.is_empty() {
                break;
            }
            for event in &events {
                detail = CartDetail::apply(detail, event);
                if let Some(d) = detail.as_ref().filter(|d| d.version > self.sent) {
                    self.send_ref(d, config).await?;
                }
            }
            from = to + 1;
        }
        self.last = detail.filter(|d| d.version == self.sent);
        Ok(Ok(()))
    }

    async fn send(&mut self, detail: CartDetail, config: &LiveConfig) -> Result<(), End> {
        self.send_ref(&detail, config).await?;
        self.last = Some(detail);
        Ok(())
    }

    /// Sends `detail` as the next event; [`Self::send`] also keeps it.
    async fn send_ref(&mut self, detail: &CartDetail, config: &LiveConfig) -> Result<(), End> {
        let opened = self.state.opened(detail).await.map_err(|_| End::Backend)?;
        let event = Event::default()
            .event("cart")
            .id(detail.version.to_string())
            .retry(Duration::from_millis(RECONNECT_MS))
            .json_data(opened)
            .map_err(|_| End::Backend)?;
        match tokio::time::timeout(config.slow_after, self.sender.send(Ok(event))).await {
            Ok(Ok(())) => {
                metrics::counter!("salestrack_live_events_total").increment(1);
                self.sent = detail.version;
                Ok(())
            }
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => {
                tracing::info!(cart_id = %self.cart_id, "a live client took no event for {:?}; dropping it", config.slow_after);
                Err(End::SlowClient)
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
