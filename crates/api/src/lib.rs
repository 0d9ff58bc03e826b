//! The HTTP contract of salestrack, apart from the core: how each input
//! rule of [`salestrack_core::contract`] and each request body of
//! [`salestrack_core::command`] reads in the OpenAPI document, and the
//! query and header parameters of the API. Validation stays in core; this
//! crate only describes it, generated from the same checks, so the
//! published contract and what the server enforces cannot drift apart.
//!
//! What JSON Schema can say is in the schemas (lengths, patterns built from
//! the very predicates the checks use, bounds, enums). What it cannot say (a
//! rule between fields, such as `subtotal = amount * quantity - discounts`)
//! is listed in the operation's `x-salestrack-rules` extension and in its
//! description.
//!
//! - [`schema`]: the JSON Schema of each value rule.
//! - [`body`]: request bodies, from core's field specs and this crate's
//!   descriptions and examples.
//! - [`params`]: query and header parameters.

pub mod body;
pub mod params;
pub mod schema;
