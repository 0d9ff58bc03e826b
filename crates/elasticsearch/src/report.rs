//! The sales report: its aggregation, and exact sums from integer limbs.

//! [`EsReadStore`]: the `ReadStore` port on Elasticsearch / OpenSearch.

use crate::documents::{limb_field, LIMBED, LIMBS, LIMB_BITS};
use crate::indices::Model;
use crate::search::created_at_range;
use crate::store::EsReadStore;
use crate::NAME;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use salestrack_core::money::{display_sum, MAX_SCALE};
use salestrack_core::ports::BackendError;
use salestrack_core::search::{ReportDimension, SalesBucket, SalesReportQuery};
use serde_json::{json, Value};

/// Most buckets one report level may have; a report that would need more
/// fails with a clear error instead of silently dropping buckets.
const MAX_TERMS: u32 = 10_000;
/// Sums of integers in doubles are exact below this.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

fn dimension_field(d: ReportDimension) -> &'static str {
    match d {
        ReportDimension::Product => "product_name",
        ReportDimension::Seller => "seller_info",
        ReportDimension::Currency => "currency",
        ReportDimension::PaymentMethod => "payment_method",
    }
}

/// A grouping level of the report aggregation, outermost first.
#[derive(Debug, Clone, Copy)]
enum Level {
    Period,
    Key,
    Currency,
}

fn report_aggregation(query: &SalesReportQuery) -> (Vec<Level>, Value) {
    let mut levels = Vec::new();
    if query.interval.is_some() {
        levels.push(Level::Period);
    }
    if query.group_by.is_some() {
        levels.push(Level::Key);
    }
    levels.push(Level::Currency);
    // Each limb of each summed integer, over the lines that have limbs;
    // the plain sums over lines written before the limbs were (schema 1,
    // exact while they stay below 2^53; a rebuild gives them limbs).
    let mut limb_sums = serde_json::Map::new();
    for name in LIMBED {
        for i in 0..LIMBS {
            limb_sums.insert(
                format!("{name}_l{i}"),
                json!({ "sum": { "field": limb_field(name, i) } }),
            );
        }
    }
    let has_limbs = json!({ "exists": { "field": limb_field("subtotal", 0) } });
    let mut aggs = json!({
        "limbed": { "filter": has_limbs, "aggs": limb_sums },
        "legacy": {
            "filter": { "bool": { "must_not": [has_limbs] } },
            "aggs": {
                "subtotal": { "sum": { "field": "subtotal_minor" } },
                "tax": { "sum": { "field": "tax_minor" } },
                "quantity": { "sum": { "field": "quantity" } },
            },
        },
    });
    for level in levels.iter().rev() {
        let grouping = match level {
            Level::Period => {
                let interval = match query.interval {
                    Some(salestrack_core::search::ReportInterval::Hour) => "hour",
                    Some(salestrack_core::search::ReportInterval::Month) => "month",
                    _ => "day",
                };
                json!({ "date_histogram": {
                    "field": "created_at", "calendar_interval": interval,
                    "time_zone": "UTC", "min_doc_count": 1,
                }})
            }
            Level::Key => json!({ "terms": {
                "field": dimension_field(query.group_by.unwrap_or(ReportDimension::Product)),
                "size": MAX_TERMS,
            }}),
            Level::Currency => json!({ "terms": { "field": "currency", "size": 500 } }),
        };
        let mut with_children = grouping;
        with_children["aggs"] = aggs;
        aggs = json!({ "group": with_children });
    }
    (levels, aggs)
}

/// The exact sum of `name` (one of [`LIMBED`]) in a report bucket: its
/// limbs' sums put together, plus the plain sum over lines without limbs.
fn bucket_sum(bucket: &Value, name: &str) -> Result<i128, BackendError> {
    let limbed = &bucket["limbed"];
    // Each limb is below 2^LIMB_BITS: their sum is exact below this many.
    let most_lines = 1_u64 << (53 - LIMB_BITS);
    if limbed["doc_count"].as_u64().unwrap_or(0) >= most_lines {
        return Err(BackendError::new(
            NAME,
            format!("a report bucket holds {most_lines} lines or more; narrow the report"),
        ));
    }
    let mut total = i128::from(exact_sum(&bucket["legacy"][name], name)?);
    for i in 0..LIMBS {
        let limb = exact_sum(&limbed[format!("{name}_l{i}")], name)?;
        total += i128::from(limb) << (i * LIMB_BITS as usize);
    }
    Ok(total)
}

/// A bucket's exact sum of money in minor units, as a decimal.
fn money_sum(bucket: &Value, name: &str) -> Result<Decimal, BackendError> {
    let minor = bucket_sum(bucket, name)?;
    Decimal::try_from_i128_with_scale(minor, MAX_SCALE)
        .map(display_sum)
        .map_err(|_| {
            BackendError::new(
                NAME,
                format!("the {name} of a report bucket is beyond {}", Decimal::MAX),
            )
        })
}

fn exact_sum(value: &Value, what: &str) -> Result<i64, BackendError> {
    let sum = value["value"].as_f64().unwrap_or(0.0);
    if sum.abs() >= EXACT_LIMIT {
        return Err(BackendError::new(
            NAME,
            format!("the {what} of a report bucket is beyond exact range; narrow the report"),
        ));
    }
    Ok(sum.round() as i64)
}

/// Walks the nested buckets into flat [`SalesBucket`]s.
fn collect_buckets(
    group: &Value,
    levels: &[Level],
    period: Option<DateTime<Utc>>,
    key: Option<String>,
    out: &mut Vec<SalesBucket>,
) -> Result<(), BackendError> {
    let Some((level, rest)) = levels.split_first() else {
        return Ok(());
    };
    if group["sum_other_doc_count"].as_u64().unwrap_or(0) > 0 {
        return Err(BackendError::new(
            NAME,
            format!("a report level has more than {MAX_TERMS} values; narrow the report"),
        ));
    }
    for bucket in group["buckets"].as_array().into_iter().flatten() {
        if bucket["doc_count"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        let label = || -> String {
            bucket["key"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| bucket["key"].to_string())
        };
        match level {
            Level::Period => {
                let start = bucket["key"]
                    .as_i64()
                    .and_then(DateTime::from_timestamp_millis);
                collect_buckets(&bucket["group"], rest, start, key.clone(), out)?;
            }
            Level::Key => {
                collect_buckets(&bucket["group"], rest, period, Some(label()), out)?;
            }
            Level::Currency => out.push(SalesBucket {
                period,
                key: key.clone(),
                currency: label(),
                revenue: money_sum(bucket, "subtotal")?,
                tax: money_sum(bucket, "tax")?,
                units: u64::try_from(bucket_sum(bucket, "quantity")?).map_err(|_| {
                    BackendError::new(NAME, "the units of a report bucket are beyond 2^64")
                })?,
                orders: bucket["doc_count"].as_u64().unwrap_or(0),
            }),
        }
    }
    Ok(())
}

/// The sales report: one aggregation over the active sales lines, summed
/// exactly from integer limbs.
pub(crate) async fn sales_report(
    store: &EsReadStore,
    query: &SalesReportQuery,
) -> Result<Vec<SalesBucket>, BackendError> {
    let (levels, aggs) = report_aggregation(query);
    let mut filter = vec![
        json!({ "term": { "status": "active" } }),
        created_at_range(query.from, query.to),
    ];
    if let Some(statuses) = query.status.cart_statuses() {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        // Lines projected before the saga have no `cart_status`: open.
        let open = json!({ "bool": { "must_not": { "exists": { "field": "cart_status" } } } });
        let mut any = vec![json!({ "terms": { "cart_status": statuses } })];
        if statuses.contains(&"open") {
            any.push(open);
        }
        filter.push(json!({ "bool": { "should": any, "minimum_should_match": 1 } }));
    }
    let body = json!({
        "size": 0,
        "track_total_hits": false,
        "query": { "bool": { "filter": filter } },
        "aggs": aggs,
    });
    let answer = store
        .search(&store.layout().alias(Model::SalesLines), &body)
        .await?;
    let mut buckets = Vec::new();
    collect_buckets(
        &answer["aggregations"]["group"],
        &levels,
        None,
        None,
        &mut buckets,
    )?;
    buckets.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    Ok(buckets)
}

/// Decimal sums are exact: minor units through integer doubles.
#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn a_sum_beyond_exact_range_is_an_error_not_a_rounded_figure() {
        assert!(exact_sum(&json!({ "value": 9.1e15 }), "revenue").is_err());
        assert_eq!(
            exact_sum(&json!({ "value": 20000000004002.0 }), "revenue").ok(),
            Some(20_000_000_004_002)
        );
    }

    /// The largest amounts the API accepts, summed past 2^53 minor units
    /// and past `i64`: the limbs' sums stay exact, and so does the total.
    #[test]
    fn limbs_sum_the_largest_amounts_exactly() {
        use crate::documents::limbs;
        let largest = 999_999_999_999_999_999_u64; // 99,999,999,999,999.9999
        let lines = 1_000_u64;
        let mut sums = [0_f64; LIMBS];
        for _ in 0..lines {
            for (sum, limb) in sums.iter_mut().zip(limbs(largest)) {
                *sum += limb as f64;
            }
        }
        let mut limbed = json!({ "doc_count": lines });
        for (i, sum) in sums.iter().enumerate() {
            limbed[format!("subtotal_l{i}")] = json!({ "value": sum });
        }
        let bucket =
            json!({ "limbed": limbed, "legacy": { "doc_count": 0, "subtotal": { "value": 0.0 } } });
        let total = money_sum(&bucket, "subtotal").expect("exact");
        assert_eq!(
            total,
            Decimal::from_i128_with_scale(i128::from(largest) * i128::from(lines), MAX_SCALE)
        );
        assert_eq!(total.to_string(), "99999999999999999.90");
        // The plain double sum would have rounded.
        assert!(exact_sum(
            &json!({ "value": largest as f64 * lines as f64 }),
            "subtotal"
        )
        .is_err());
    }

    #[test]
    fn nested_buckets_flatten_with_their_period_and_key() {
        let query = SalesReportQuery {
            interval: Some(salestrack_core::search::ReportInterval::Day),
            group_by: Some(ReportDimension::Seller),
            from: None,
            to: None,
            ..Default::default()
        };
        let (levels, _) = report_aggregation(&query);
        let answer = json!({ "buckets": [ { "key": 1795132800000_i64, "doc_count": 2, "group": {
            "sum_other_doc_count": 0,
            "buckets": [ { "key": "acme", "doc_count": 2, "group": { "buckets": [
                { "key": "EUR", "doc_count": 2,
                  "limbed": { "doc_count": 1,
                    "subtotal_l0": { "value": 1000.0 }, "subtotal_l1": { "value": 0.0 }, "subtotal_l2": { "value": 0.0 },
                    "tax_l0": { "value": 200.0 }, "tax_l1": { "value": 0.0 }, "tax_l2": { "value": 0.0 },
                    "quantity_l0": { "value": 2.0 }, "quantity_l1": { "value": 0.0 }, "quantity_l2": { "value": 0.0 } },
                  "legacy": { "doc_count": 1,
                    "subtotal": { "value": 1000.0 }, "tax": { "value": 200.0 }, "quantity": { "value": 1.0 } } }
            ]}}]
        }}]});
        let mut out = Vec::new();
        collect_buckets(&answer, &levels, None, None, &mut out).expect("buckets");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key.as_deref(), Some("acme"));
        assert_eq!(out[0].revenue, Decimal::new(20, 2));
        assert_eq!((out[0].units, out[0].orders), (3, 2));
        assert_eq!(
            out[0].period.map(|p| p.to_rfc3339()),
            Some("2026-11-20T00:00:00+00:00".to_string())
        );
    }
}
