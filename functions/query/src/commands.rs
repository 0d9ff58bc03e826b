//! A command's status: accepted, applied or rejected with the reason.

use crate::params::Given;
use crate::{params, path_id, QueryState};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use salestrack_core::command::CHECKOUT_CART;
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::ports::Reader;
use salestrack_core::read_model::CartStatus;
use salestrack_core::wire::{Outcome, OutcomeStatus, Reason};
use salestrack_platform::auth::Access;
use salestrack_platform::http::{ApiError, ErrorBody};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Durably on the bus, not decided yet.
    Accepted,
    Applied,
    Rejected,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandStatus {
    pub command_id: CommandId,
    pub cart_id: CartId,
    pub status: CommandState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_type: Option<String>,
    /// The cart's stream version once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// True when the command repeated one already applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// For a checkout: where its cart stands now (`checking_out`, `paid`,
    /// `cancelled`), as far as the read models have it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_status: Option<CartStatus>,
    /// Why the cart was cancelled: `payment_declined` or `payment_timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_status_reason: Option<String>,
}

impl From<Outcome> for CommandStatus {
    fn from(o: Outcome) -> Self {
        CommandStatus {
            command_id: o.command_id,
            cart_id: o.cart_id,
            status: match o.status {
                OutcomeStatus::Applied => CommandState::Applied,
                OutcomeStatus::Rejected => CommandState::Rejected,
            },
            order_id: o.order_id,
            command_type: Some(o.command_type),
            version: Some(o.version),
            duplicate: Some(o.duplicate),
            reason: o.reason,
            decided_at: Some(o.decided_at),
            cart_status: None,
            cart_status_reason: None,
        }
    }
}

impl QueryState {
    /// A decided command's status; a checkout's carries its cart's status.
    pub(crate) async fn decided(
        &self,
        outcome: Outcome,
        access: &Access,
    ) -> Result<CommandStatus, ApiError> {
        let checkout = outcome.command_type == CHECKOUT_CART;
        let cart_id = outcome.cart_id;
        let mut status = CommandStatus::from(outcome);
        if checkout {
            let summary = self
                .read_store
                .cart_summary(cart_id, Reader::from(access.owner()))
                .await?;
            if let Some(summary) = summary {
                status.cart_status = Some(summary.status);
                status.cart_status_reason = summary.status_reason;
            }
        }
        Ok(status)
    }
}

/// Where a command stands. Unknown ids are `404`; with the command's
/// consistency token the call waits for the decision and answers `accepted`
/// if it is still pending when the wait ends.
#[utoipa::path(
    get, path = "/commands/{command_id}", tag = "queries",
    params(("command_id" = String, Path, format = Uuid), params::ConsistencyParams),
    responses((status = 200, body = CommandStatus), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 404, description = "Not decided yet, unknown, or not the caller's", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn get_command(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Path(command_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Json<CommandStatus>, ApiError> {
    let command_id: CommandId = path_id(&command_id, "command id")?;
    let given = Given::new(params::CONSISTENCY, &query, &headers)?;
    match given.consistency_token()? {
        // Another command's token is a barrier like on any read: wait for
        // it, then answer about this one.
        Some(t) if t.command_id != command_id => {
            state.reach(t, &access).await?;
            match state.command_status(command_id, &access).await? {
                Some(outcome) => Ok(Json(state.decided(outcome, &access).await?)),
                None => Err(undecided(command_id)),
            }
        }
        Some(t) => match state.reach(t, &access).await? {
            Some(outcome) => Ok(Json(state.decided(outcome, &access).await?)),
            None => Ok(Json(CommandStatus {
                command_id,
                cart_id: t.cart_id,
                status: CommandState::Accepted,
                order_id: None,
                command_type: None,
                version: None,
                duplicate: None,
                reason: None,
                decided_at: None,
                cart_status: None,
                cart_status_reason: None,
            })),
        },
        None => match state.command_status(command_id, &access).await? {
            Some(outcome) => Ok(Json(state.decided(outcome, &access).await?)),
            None => Err(undecided(command_id)),
        },
    }
}

fn undecided(command_id: CommandId) -> ApiError {
    ApiError::NotFound(format!(
        "no decision for command {command_id} yet (unknown, or not processed yet: pass its consistency_token to wait)"
    ))
}
