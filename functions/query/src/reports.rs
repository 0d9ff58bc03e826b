//! The sales report.

use crate::params::Given;
use crate::{answer, params, QueryState};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};
use salestrack_core::personal;
use salestrack_core::ports::key_store;
use salestrack_core::search::{
    ReportDimension, ReportInterval, ReportStatus, SalesBucket, SalesReportQuery,
};
use salestrack_platform::auth::Access;
use salestrack_platform::http::{ApiError, ErrorBody};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SalesReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<ReportInterval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<ReportDimension>,
    /// The range covered, `[from, to)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Which carts' lines were counted.
    pub status: ReportStatus,
    /// Units, revenue (subtotal), tax and order lines of active lines per
    /// bucket, ordered by period, key and currency.
    pub buckets: Vec<SalesBucket>,
}

#[utoipa::path(
    get, path = "/reports/sales", tag = "queries", params(params::ReportParams),
    responses((status = 200, body = SalesReport), (status = 400, body = ErrorBody), (status = 401, description = "Authentication is on and the bearer token is missing or invalid", body = ErrorBody), (status = 403, description = "Authentication is on and the caller lacks the `admin` role", body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn sales_report(
    State(state): State<QueryState>,
    Extension(access): Extension<Access>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use params::report;
    if !access.is_admin() {
        return Err(ApiError::Forbidden(
            "the sales report needs the `admin` role".into(),
        ));
    }
    let given = Given::new(report::ALL, &query, &headers)?;
    let interval = given.choice::<ReportInterval>(&report::INTERVAL)?;
    let group_by = given.choice::<ReportDimension>(&report::GROUP_BY)?;
    let status = given
        .choice::<ReportStatus>(&report::STATUS)?
        .unwrap_or_default();
    let from = given.bound(&report::FROM, false)?;
    let to = given.bound(&report::TO, true)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "`from` must be before `to`",
            ));
        }
    }
    let fresh = state.freshness(given.consistency_token()?, &access).await?;
    let query = SalesReportQuery {
        interval,
        group_by,
        from,
        to,
        status,
    };
    let mut buckets = state.read_store.sales_report(&query).await?;
    if group_by == Some(ReportDimension::PaymentMethod) {
        // Grouped by sealed value, which differs per user: opened, merged.
        let keys = key_store::keys_of(state.keys.as_ref(), personal::report_keys(&buckets)).await?;
        buckets = personal::open_report(buckets, &keys);
    }
    Ok(answer(
        &state,
        fresh,
        Ok(SalesReport {
            interval,
            group_by,
            from,
            to,
            status,
            buckets,
        }),
    )
    .await)
}
