//! The command function: `POST /orders`, `POST /orders/{order_id}/cancel`,
//! `POST /carts/{cart_id}/checkout`, and `POST /users/{user_id}/erase`.
//! Personal fields are sealed here, where they enter (see
//! `salestrack_core::personal`), and an erasure destroys their keys.
//! Validates the request, produces one command record keyed by cart id, and
//! answers `202` as soon as the bus has it durably. Never waits for the domain.
//!
//! Depends on the core's ports only: it holds a `Producer`, never a driver.
//! The same [`router`] is served by the local runner and by `lambda_http`.

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use salestrack_api::params::{Param, ParamSpec};
use salestrack_core::command::{CancelOrder, CheckoutCart, Command, PlaceOrder};
use salestrack_core::headers::{self as h, TraceParent};
use salestrack_core::ids::{CartId, CommandId, OrderId};
use salestrack_core::personal::{cart_holder, seal_line, PersonalField};
use salestrack_core::ports::{Clock, KeyStore, Producer, ReadStore};
use salestrack_core::search::CartSearch;
use salestrack_core::token::ConsistencyToken;
use salestrack_core::wire::CommandRecord;
use salestrack_platform::auth::{self, Access, Authenticator};
use salestrack_platform::http::{ApiError, ErrorBody};
use serde::Serialize;
use std::sync::Arc;
use tracing::Instrument;

/// What the command routes need, built once per process.
#[derive(Clone)]
pub struct CommandState {
    pub producer: Arc<dyn Producer>,
    pub clock: Arc<dyn Clock>,
    pub topic: String,
    pub max_body_bytes: usize,
    /// Bearer-token authentication; `None`: open to anyone who can reach it.
    pub auth: Option<Arc<Authenticator>>,
    /// The users' data keys: personal fields are sealed here, where they
    /// enter, and never travel in the clear.
    pub keys: Arc<dyn KeyStore>,
    /// Read only, for an erasure: which carts are the user's.
    pub read_store: Arc<dyn ReadStore>,
}

impl CommandState {
    /// The one way a process builds the command function's state: the bus
    /// from `backends`, the rest from `settings`, and the process's
    /// authenticator, if authentication is on.
    pub fn from_settings(
        settings: &salestrack_platform::Settings,
        backends: &salestrack_platform::Backends,
        auth: Option<Arc<Authenticator>>,
    ) -> Result<CommandState, salestrack_core::ports::BackendError> {
        Ok(CommandState {
            producer: backends.producer()?,
            clock: Arc::new(salestrack_core::ports::SystemClock),
            topic: settings.topics.commands.clone(),
            max_body_bytes: settings.http.max_body_bytes,
            auth,
            keys: backends.key_store()?,
            read_store: backends.read_store()?,
        })
    }
}

/// The `202 Accepted` body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    pub command_id: CommandId,
    pub cart_id: CartId,
    /// The order line, for `POST /orders` and its cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    /// Pass to the query side (`consistency_token`) to read your own write.
    pub consistency_token: String,
    /// Where to follow the command: `/commands/{command_id}`.
    pub status_url: String,
}

/// A request body's document, built from the field specs its parser
/// validates with: the schema cannot say what the parser does not check.
macro_rules! body_schema {
    ($(#[$doc:meta])* $name:ident, $fields:path, $docs:path) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                salestrack_api::body::body_schema($fields, $docs).into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

body_schema!(
    /// Body of `POST /orders`.
    OrderRequest,
    salestrack_core::command::ORDER_FIELDS,
    salestrack_api::body::ORDER_DOCS
);
body_schema!(
    /// Body of `POST /orders/{order_id}/cancel`.
    CancelRequest,
    salestrack_core::command::CANCEL_FIELDS,
    salestrack_api::body::CANCEL_DOCS
);
body_schema!(
    /// Body of `POST /carts/{cart_id}/checkout`; optional as a whole.
    CheckoutRequest,
    salestrack_core::command::CHECKOUT_FIELDS,
    salestrack_api::body::CHECKOUT_DOCS
);

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(place_order, cancel_order, checkout_cart, erase_user),
    components(schemas(
        Accepted,
        CancelRequest,
        CheckoutRequest,
        OrderRequest,
        Erased,
        ErrorBody
    ))
)]
pub struct CommandApi;

pub fn router(state: CommandState) -> Router {
    let auth = state.auth.clone();
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{order_id}/cancel", post(cancel_order))
        .route("/carts/{cart_id}/checkout", post(checkout_cart))
        .route("/users/{user_id}/erase", post(erase_user))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(auth, auth::require))
}

/// Record one order line of a cart.
#[utoipa::path(
    post, path = "/orders", tag = "commands",
    request_body(content = OrderRequest, content_type = "application/json"),
    params(IdempotencyKey),
    responses(
        (status = 202, description = "Durably accepted", body = Accepted),
        (status = 400, description = "Invalid fields, all listed", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody),
        (status = 403, description = "`user_id` is not the token's subject", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "The bus did not confirm the command (`unconfirmed`: it may or may not be recorded; send the same request again, a repeat is applied once), or the server is at its limit (`overloaded`)", body = ErrorBody),
    )
)]
pub async fn place_order(
    State(state): State<CommandState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let json = read_json(&headers, body, state.max_body_bytes).await?;
    let key = idempotency_key(&headers)?;
    let mut order = PlaceOrder::parse(&json)?;
    if access
        .owner()
        .is_some_and(|owner| owner != order.line.user_id)
    {
        return Err(ApiError::Forbidden(
            "`user_id` must be your own: the token's subject".into(),
        ));
    }
    let data_key = state.keys.sealing_key(&order.line.user_id).await?;
    seal_line(&mut order.line, &data_key);
    let command = Command::PlaceOrder(order);
    accept(&state, command, key.as_deref(), trace_of(&headers)).await
}

/// Cancel one order line of a cart.
#[utoipa::path(
    post, path = "/orders/{order_id}/cancel", tag = "commands",
    params(
        ("order_id" = String, Path, format = Uuid, description = "The order line to cancel"),
        IdempotencyKey,
    ),
    request_body(content = CancelRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Durably accepted", body = Accepted),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn cancel_order(
    State(state): State<CommandState>,
    Extension(access): Extension<Access>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let order_id: OrderId = order_id.parse().map_err(|_| {
        ApiError::bad_request("invalid_path", "the order id in the path must be a UUID")
    })?;
    let json = read_json(&headers, body, state.max_body_bytes).await?;
    let key = idempotency_key(&headers)?;
    let mut cancel = CancelOrder::parse(order_id, &json)?;
    // The domain lets only the cart's owner cancel (another user's line
    // reads as no line): the command carries who asked.
    cancel.requested_by = access.owner().map(str::to_owned);
    let command = Command::CancelOrder(cancel);
    accept(&state, command, key.as_deref(), trace_of(&headers)).await
}

/// Check a cart out: close it and start its payment. The saga's outcome
/// (`paid`, or `cancelled` with `payment_declined` / `payment_timeout`)
/// shows in the cart and in `GET /commands/{command_id}`.
#[utoipa::path(
    post, path = "/carts/{cart_id}/checkout", tag = "commands",
    params(
        ("cart_id" = String, Path, format = Uuid, description = "The cart to check out"),
        IdempotencyKey,
    ),
    request_body(content = Option<CheckoutRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "Durably accepted", body = Accepted),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn checkout_cart(
    State(state): State<CommandState>,
    Extension(access): Extension<Access>,
    Path(cart_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let cart_id: CartId = cart_id.parse().map_err(|_| {
        ApiError::bad_request("invalid_path", "the cart id in the path must be a UUID")
    })?;
    let json = read_optional_json(&headers, body, state.max_body_bytes).await?;
    let key = idempotency_key(&headers)?;
    let mut checkout = CheckoutCart::parse(cart_id, &json)?;
    // Only the cart's owner may check it out: the domain compares.
    checkout.requested_by = access.owner().map(str::to_owned);
    if let Some(method) = checkout.payment_method.as_mut() {
        let data_key = state.keys.sealing_key(&cart_holder(cart_id)).await?;
        *method = data_key
            .seal(PersonalField::PaymentMethod, method)
            .to_token();
    }
    let command = Command::CheckoutCart(checkout);
    accept(&state, command, key.as_deref(), trace_of(&headers)).await
}

/// What an erasure destroyed.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Erased {
    pub user_id: String,
    /// Data keys destroyed by this call: the user's, and those of their
    /// carts' checkouts. None when the user was erased already (or never
    /// ordered).
    pub keys_destroyed: usize,
    /// The user's carts the read models know: each one's personal fields
    /// now read as `[erased]`.
    pub carts: usize,
}

/// The rule of an erasure's user id: the one `POST /orders` takes.
const ERASED_USER: Param = Param::Text(salestrack_core::contract::Text {
    max: salestrack_core::command::MAX_USER_ID,
});

/// The path parameter of `POST /users/{user_id}/erase`, described by
/// [`ERASED_USER`], the rule the handler checks.
pub struct ErasedUser;

impl utoipa::IntoParams for ErasedUser {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        vec![ParameterBuilder::new()
            .name("user_id")
            .parameter_in(ParameterIn::Path)
            .required(utoipa::openapi::Required::True)
            .description(Some("The user whose personal data to erase"))
            .schema(Some(ERASED_USER.schema()))
            .build()]
    }
}

/// Carts read per page while an erasure looks for the user's.
const ERASE_PAGE: u32 = 100;

/// Erase a user's personal data (GDPR art. 17): their data keys are
/// destroyed, so every personal field sealed under them (addresses, payment
/// methods), in every store and message that holds one, can no longer be
/// read and is answered as `[erased]`. Sales figures stay exact. Idempotent;
/// what the user orders afterwards is sealed under a new key.
#[utoipa::path(
    post, path = "/users/{user_id}/erase", tag = "commands",
    params(ErasedUser),
    responses(
        (status = 200, description = "Erased: the keys are destroyed, durably", body = Erased),
        (status = 400, description = "The user id is not one `POST /orders` accepts", body = ErrorBody),
        (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody),
        (status = 403, description = "Authentication is on and the caller lacks the `admin` role", body = ErrorBody),
        (status = 503, description = "The key store or the read store is unavailable: nothing is confirmed; send the same request again", body = ErrorBody),
    )
)]
pub async fn erase_user(
    State(state): State<CommandState>,
    Extension(access): Extension<Access>,
    Path(user_id): Path<String>,
) -> Result<Json<Erased>, ApiError> {
    if !access.is_admin() {
        return Err(ApiError::Forbidden(
            "erasing a user's personal data needs the `admin` role".into(),
        ));
    }
    ERASED_USER
        .check("user_id", &user_id)
        .map_err(|p| ApiError::bad_request(p.code, p.message))?;
    // The user's own key first: from here on nothing of theirs opens.
    let mut keys_destroyed = state.keys.destroy(&user_id).await?.len();
    let mut carts = 0;
    let mut after = None;
    loop {
        let page = state
            .read_store
            .search_carts(&CartSearch {
                user_id: Some(user_id.clone()),
                currency: None,
                from: None,
                to: None,
                q: None,
                limit: ERASE_PAGE,
                after,
            })
            .await?;
        for cart in &page.carts {
            keys_destroyed += state.keys.destroy(&cart_holder(cart.cart_id)).await?.len();
        }
        carts += page.carts.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    tracing::info!(keys_destroyed, carts, "a user's personal data erased");
    Ok(Json(Erased {
        user_id,
        keys_destroyed,
        carts,
    }))
}

/// The caller's W3C trace context, if its `traceparent` header is valid.
fn trace_of(headers: &HeaderMap) -> Option<TraceParent> {
    headers
        .get(h::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

async fn accept(
    state: &CommandState,
    command: Command,
    key: Option<&str>,
    caller_trace: Option<TraceParent>,
) -> Result<Response, ApiError> {
    let command_id = command.derive_id(key);
    let (cart_id, order_id) = (command.cart_id(), command.order_id());
    // Continue the caller's trace, or start one named after the command.
    let trace = caller_trace.map_or_else(
        || TraceParent::for_command(command_id),
        |t| t.command_in(command_id),
    );
    let span = tracing::info_span!("accept", %command_id, %cart_id,
        order_id = order_id.map(tracing::field::display), kind = command.kind(),
        trace_id = %trace.trace_id_hex());
    salestrack_platform::telemetry::continue_trace(&span, &trace);
    async {
        let record = CommandRecord {
            command_id,
            accepted_at: state.clock.now(),
            command,
        };
        let outbound = record.outbound(&state.topic, trace);
        let kind = record.command.kind();
        let delivery = state.producer.send(outbound).await.map_err(|source| {
            metrics::counter!("salestrack_commands_failed_total", "kind" => kind).increment(1);
            ApiError::Unconfirmed { command_id, source }
        })?;
        metrics::counter!("salestrack_commands_accepted_total", "kind" => kind).increment(1);
        tracing::info!(
            partition = delivery.partition,
            offset = delivery.offset,
            "command accepted"
        );
        let token = ConsistencyToken {
            command_id,
            cart_id,
        }
        .encode();
        let status_url = format!("/commands/{command_id}");
        let body = Accepted {
            command_id,
            cart_id,
            order_id,
            consistency_token: token,
            status_url: status_url.clone(),
        };
        Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, status_url)],
            Json(body),
        )
            .into_response())
    }
    .instrument(span)
    .await
}

/// A body that may be left out: none (no content type, no length) is `{}`.
async fn read_optional_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<serde_json::Value, ApiError> {
    let declared_empty = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    let untyped = headers.get(header::CONTENT_TYPE).is_none();
    if declared_empty || untyped {
        let bytes = to_bytes(body, limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge { limit })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Object(Default::default()));
        }
        return Err(ApiError::UnsupportedMediaType);
    }
    read_json(headers, body, limit).await
}

/// Checks the content type, enforces the size limit while reading, parses JSON.
async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<serde_json::Value, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })?;
    salestrack_core::json::parse_strict(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

const IDEMPOTENCY_KEY: ParamSpec = ParamSpec::header(
    "Idempotency-Key",
    Param::Key {
        max: MAX_IDEMPOTENCY_KEY,
    },
    "Makes a retried POST safe: the same key, the same command. Defaults to the natural key \
     (the order id; the cart for a checkout)",
);

/// The `Idempotency-Key` header, documented from its spec.
pub struct IdempotencyKey;

impl utoipa::IntoParams for IdempotencyKey {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![IDEMPOTENCY_KEY.document()]
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY.name) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("\u{FFFD}");
    let key = IDEMPOTENCY_KEY.read(Some(text)).map_err(|_| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )
    })?;
    Ok(key.map(str::to_owned))
}
