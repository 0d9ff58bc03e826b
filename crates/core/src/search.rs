//! What a reader asks the read store for and gets back: cart searches and
//! their pages, sales-report queries and their buckets.

use crate::ids::CartId;
use crate::read_model::{CartStatus, CartSummary, SalesLine};
use chrono::{DateTime, Datelike, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// `GET /carts` filters. `q` matches every word against product names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CartSearch {
    pub user_id: Option<String>,
    /// ISO 4217 code, upper case.
    pub currency: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub q: Option<String>,
    pub limit: u32,
    pub after: Option<SearchCursor>,
}

/// Position in the `(created_at desc, cart_id desc)` order of a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchCursor {
    pub created_at: DateTime<Utc>,
    pub cart_id: CartId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartPage {
    pub carts: Vec<CartSummary>,
    /// Set when more results may follow.
    pub next: Option<SearchCursor>,
}

impl CartPage {
    /// A page from up to `limit + 1` results: the extra one only says that
    /// another page follows, starting after the last one kept.
    pub fn from_overfetch(mut carts: Vec<CartSummary>, limit: u32) -> CartPage {
        let more = carts.len() > limit as usize;
        carts.truncate(limit as usize);
        let next = more
            .then(|| {
                carts.last().map(|c| SearchCursor {
                    created_at: c.created_at,
                    cart_id: c.cart_id,
                })
            })
            .flatten();
        CartPage { carts, next }
    }
}

/// The time buckets of a sales report (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportInterval {
    Hour,
    Day,
    Month,
}

impl ReportInterval {
    /// The start of the bucket `at` falls in.
    pub fn bucket_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let day = at.date_naive();
        let start = match self {
            ReportInterval::Hour => day.and_hms_opt(at.hour(), 0, 0),
            ReportInterval::Day => day.and_hms_opt(0, 0, 0),
            ReportInterval::Month => day.with_day(1).and_then(|d| d.and_hms_opt(0, 0, 0)),
        };
        start.map_or(at, |s| s.and_utc())
    }
}

/// What a sales report groups by besides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportDimension {
    Product,
    Seller,
    Currency,
    PaymentMethod,
}

impl ReportDimension {
    /// The line's value of this dimension.
    pub fn of(self, line: &SalesLine) -> &str {
        match self {
            ReportDimension::Product => &line.product_name,
            ReportDimension::Seller => &line.seller_info,
            ReportDimension::Currency => &line.currency,
            ReportDimension::PaymentMethod => &line.payment_method,
        }
    }
}

/// Totals of active sales lines created in `[from, to)`, per time bucket
/// (`interval`), per dimension value (`group_by`) and always per currency.
/// Without interval and dimension: one total per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesReportQuery {
    pub interval: Option<ReportInterval>,
    pub group_by: Option<ReportDimension>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Which carts' lines count (`all` by default).
    pub status: ReportStatus,
}

/// The carts whose active lines a report counts, by cart status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Every active line, whatever its cart's status.
    #[default]
    All,
    /// Carts not yet settled: `open` and `checking_out`.
    Open,
    /// Confirmed sales only.
    Paid,
    /// Carts the checkout saga cancelled.
    Cancelled,
}

impl ReportStatus {
    /// The cart statuses counted; `None`: all of them.
    pub fn cart_statuses(self) -> Option<&'static [CartStatus]> {
        match self {
            ReportStatus::All => None,
            ReportStatus::Open => Some(&[CartStatus::Open, CartStatus::CheckingOut]),
            ReportStatus::Paid => Some(&[CartStatus::Paid]),
            ReportStatus::Cancelled => Some(&[CartStatus::Cancelled]),
        }
    }

    /// Whether a line of a cart in `status` counts.
    pub fn counts(self, status: CartStatus) -> bool {
        self.cart_statuses().is_none_or(|s| s.contains(&status))
    }
}

/// Totals of the active sales lines of one bucket, per currency (amounts in
/// different currencies are never added together). Stores return buckets
/// ordered by period, key, currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SalesBucket {
    /// Start of the time bucket, when the report has an interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<DateTime<Utc>>,
    /// The dimension's value, when the report groups by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub currency: String,
    /// Sum of the lines' subtotals.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub revenue: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tax: Decimal,
    pub units: u64,
    /// Order lines counted.
    pub orders: u64,
}

impl SalesBucket {
    /// Sort key shared by every store.
    pub fn order_key(&self) -> (Option<DateTime<Utc>>, Option<&str>, &str) {
        (self.period, self.key.as_deref(), &self.currency)
    }
}
