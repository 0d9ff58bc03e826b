//! Kafka record headers every producer sets, and the W3C trace context
//! (`traceparent`) carried from the command function through the domain to
//! the projector.
//!
//! Trace and span ids are derived from the command and event ids, never
//! random, so a redelivered record produces byte-identical headers and one
//! order's trace id can be computed from its command id.

use crate::ids::{CommandId, EventId};
use uuid::Uuid;

pub const CONTENT_TYPE: &str = "content-type";
/// `place_order`, `cancel_order`, `order_placed`, `outcome`, ...
pub const MESSAGE_TYPE: &str = "salestrack-message-type";
pub const SCHEMA_VERSION: &str = "salestrack-schema-version";
pub const COMMAND_ID: &str = "salestrack-command-id";
pub const EVENT_ID: &str = "salestrack-event-id";
pub const TRACEPARENT: &str = "traceparent";
/// When the command function accepted the command the record stems from
/// (RFC 3339), for the command-to-visible latency.
pub const ACCEPTED_AT: &str = "salestrack-accepted-at";

/// The [`MESSAGE_TYPE`] header: the record's `type`.
pub fn message_type(kind: &str) -> (String, Vec<u8>) {
    (MESSAGE_TYPE.into(), kind.as_bytes().to_vec())
}

/// The [`SCHEMA_VERSION`] header: the version of the record's `type`.
pub fn schema_version(version: u32) -> (String, Vec<u8>) {
    (SCHEMA_VERSION.into(), version.to_string().into_bytes())
}

/// The [`COMMAND_ID`] header: the command the record stems from.
pub fn command_id(id: CommandId) -> (String, Vec<u8>) {
    (COMMAND_ID.into(), id.to_string().into_bytes())
}

/// The [`EVENT_ID`] header: the event the record is, or stems from.
pub fn event_id(id: EventId) -> (String, Vec<u8>) {
    (EVENT_ID.into(), id.to_string().into_bytes())
}

/// The [`ACCEPTED_AT`] header for `at`.
pub fn accepted_at(at: chrono::DateTime<chrono::Utc>) -> (String, Vec<u8>) {
    (
        ACCEPTED_AT.into(),
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into_bytes(),
    )
}

/// The time in an [`ACCEPTED_AT`] header, if present and well-formed.
pub fn find_accepted_at(headers: &[(String, Vec<u8>)]) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = std::str::from_utf8(find(headers, ACCEPTED_AT)?).ok()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The value of header `name`, if present.
pub fn find<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// A W3C `traceparent`: version 00, trace id, parent span id, sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn span_of(id: Uuid) -> [u8; 8] {
    let mut span = [0u8; 8];
    span.copy_from_slice(&id.as_bytes()[8..]);
    span
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceParent {
    /// A new trace for a command that arrived without one: its trace id is
    /// the command id.
    pub fn for_command(command_id: CommandId) -> TraceParent {
        TraceParent {
            trace_id: *command_id.0.as_bytes(),
            span_id: span_of(command_id.0),
            sampled: true,
        }
    }

    /// The command's span inside the caller's trace.
    pub fn command_in(self, command_id: CommandId) -> TraceParent {
        TraceParent {
            span_id: span_of(command_id.0),
            ..self
        }
    }

    /// An event's span inside this trace.
    pub fn event_in(self, event_id: EventId) -> TraceParent {
        TraceParent {
            span_id: span_of(event_id.0),
            ..self
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn encode(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex(&self.trace_id),
            hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }

    /// Parses version 00; `None` for anything malformed or all-zero ids,
    /// which W3C says to ignore (start a new trace instead).
    pub fn parse(text: &str) -> Option<TraceParent> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = unhex::<16>(trace)?;
        let span_id = unhex::<8>(span)?;
        let flags = unhex::<1>(flags)?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The trace context of a record, if it carries a valid one.
    pub fn from_headers(headers: &[(String, Vec<u8>)]) -> Option<TraceParent> {
        find(headers, TRACEPARENT)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(TraceParent::parse)
    }

    pub fn header(&self) -> (String, Vec<u8>) {
        (TRACEPARENT.to_owned(), self.encode().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_keeps_its_trace_across_hops() {
        let command = CommandId(Uuid::new_v4());
        let root = TraceParent::for_command(command);
        let text = root.encode();
        assert_eq!(text.len(), 55, "{text}");
        assert_eq!(TraceParent::parse(&text), Some(root));
        let event = root.event_in(EventId(Uuid::new_v4()));
        assert_eq!(event.trace_id, root.trace_id);
        assert_ne!(event.span_id, root.span_id);
    }

    #[test]
    fn the_w3c_example_parses_and_bad_values_do_not() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(tp.sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
