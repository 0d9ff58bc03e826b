//! Personal data and crypto-shredding: which fields are personal (the one
//! list), and how each is sealed under its user's data key so that
//! destroying the key erases the field from every copy of every message,
//! the immutable event store's included.
//!
//! - [`PersonalField::ALL`] is the one list. Sales facts (amounts,
//!   quantities, currency, product, seller, times) are not on it and stay
//!   in the clear, so reports and rebuilds need no key. The user id is the
//!   pseudonymous key the data keys are filed under and stays too.
//! - A field is sealed with AES-256-GCM-SIV under a 256-bit key of its
//!   own user ([`DataKey`]), the field's name and the key's id as
//!   associated data (a sealed value moved to another field, or presented
//!   with another key, does not open).
//! - The nonce is derived from the key, the field and the value
//!   (HMAC-SHA-256, truncated): sealing is deterministic per key, so the
//!   same order placed twice (a client's retry, a redelivered command)
//!   yields the same bytes, and the rules' duplicate check compares sealed
//!   lines as it compared clear ones. What that reveals is only whether two
//!   values of one user are equal; GCM-SIV stays secure when a nonce
//!   repeats, which is why it is the cipher.
//! - A sealed value is a string ([`Sealed::to_token`]): it travels in the
//!   string fields commands, events, snapshots and read models already
//!   have, and a clear string that looks like one is refused where input
//!   enters (control characters are, and the token starts with one).
//! - [`document`] applies it: sealing an order line where it enters,
//!   opening the sealed values of a document where it is answered.

pub mod document;
pub mod seal;

pub use document::{
    cart_holder, open_document, open_report, opened, report_keys, seal_line, sealed_keys,
};
pub use seal::{DataKey, MalformedToken, OpenError, PersonalField, Sealed, ERASED};
