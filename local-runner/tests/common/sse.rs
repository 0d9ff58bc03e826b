//! A live stream (`GET /carts/{id}/live`) read with reqwest and parsed as
//! the Server-Sent Events format says; shared by the test binaries that
//! read one.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use crate::common::Http;
use reqwest::StatusCode;
use salestrack_core::ids::CartId;
use serde_json::Value;
use std::time::{Duration, Instant};

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn version(&self) -> u64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("an event without a version: {self:?}"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }
}

/// A live stream read with reqwest, parsed as the SSE format says.
pub struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    /// Opens `/carts/{cart}/live`; the response when it is not a stream.
    pub async fn open(
        app: &Http,
        cart: CartId,
        last_event_id: Option<u64>,
    ) -> Result<Stream, reqwest::Response> {
        let mut request = app.client.get(app.url(&format!("/carts/{cart}/live")));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("get live");
        if response.status() != StatusCode::OK {
            return Err(response);
        }
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "a live stream is an event stream"
        );
        Ok(Stream {
            response,
            buffer: String::new(),
        })
    }

    /// The next event (heartbeat comments skipped); `None` once the server
    /// ended the stream. Fails the test after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = value.to_owned(),
                        "data" => event.data.push_str(value),
                        _ => continue,
                    }
                    any = true;
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within {within:?}");
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => panic!("the stream broke: {e}"),
                Err(_) => panic!("no event within {within:?}"),
            }
        }
    }

    /// The next `cart` event.
    pub async fn next_cart(&mut self, within: Duration) -> SseEvent {
        let event = self.next(within).await.expect("the stream ended");
        assert_eq!(event.event, "cart", "{event:?}");
        event
    }
}
