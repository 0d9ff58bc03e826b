//! Every decoder of outside bytes in salestrack-core on one input: the
//! command, event, outcome, payment-request and projection-notice
//! envelopes, strict JSON and order bodies, consistency tokens and
//! snapshots. A panic, or a value that does not survive encode then
//! decode, is a finding. Seeds: `fuzz/corpus/decoders/` (the committed
//! event corpus, a snapshot, an order body, a token).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The same oracle the stable proptest run uses.
#[path = "../../crates/core/tests/support/decode_all.rs"]
mod decode_all;

fuzz_target!(|bytes: &[u8]| decode_all::decode_everything(bytes));
