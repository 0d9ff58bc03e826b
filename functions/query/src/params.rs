//! The query parameters and headers of every read, each a [`ParamSpec`]:
//! the handlers read them through [`Given`] with the spec and the document
//! lists them from the same specs (`Documented`), so neither can name or
//! check a parameter the other does not.

use crate::MAX_LIMIT;
use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDate, Utc};
use salestrack_api::params::{self, Param, ParamSpec};
use salestrack_core::command::MAX_USER_ID;
use salestrack_core::contract::{self, Text};
use salestrack_core::token;
use salestrack_platform::http::ApiError;

pub const CONSISTENCY_TOKEN: ParamSpec = ParamSpec::query(
    "consistency_token",
    Param::Token {
        prefix: token::PREFIX,
        bytes: token::BYTES,
    },
    "The `consistency_token` of a `202`: the read first waits, bounded, until the projection \
     reached that command (`Consistency: fresh`), else answers what it has (`Consistency: stale`)",
);
pub const LIMIT: ParamSpec = ParamSpec::query(
    "limit",
    Param::Integer {
        min: 1,
        max: MAX_LIMIT as u64,
    },
    "Page size, default 20",
);

/// Most characters of the words of a product search.
pub const MAX_SEARCH_WORDS: usize = 256;

/// `GET /carts`.
pub mod search {
    use super::*;

    pub const USER_ID: ParamSpec = ParamSpec::query(
        "user_id",
        Param::Text(Text { max: MAX_USER_ID }),
        "Only this user's carts (with authentication on, another user's finds none)",
    );
    pub const CURRENCY: ParamSpec =
        ParamSpec::query("currency", Param::Currency, "Only carts in this currency");
    pub const FROM: ParamSpec = ParamSpec::query(
        "from",
        Param::DateTime,
        "Carts created at or after this time",
    );
    pub const TO: ParamSpec =
        ParamSpec::query("to", Param::DateTime, "Carts created before this time");
    pub const Q: ParamSpec = ParamSpec::query(
        "q",
        Param::Text(Text {
            max: MAX_SEARCH_WORDS,
        }),
        "Words that must all occur in the product names (case-insensitive)",
    );
    pub const CURSOR: ParamSpec = ParamSpec::query(
        "cursor",
        Param::Token {
            prefix: CURSOR_PREFIX,
            bytes: CURSOR_BYTES,
        },
        "`next_cursor` of the previous page",
    );
    pub const ALL: &[ParamSpec] = &[
        USER_ID,
        CURRENCY,
        FROM,
        TO,
        Q,
        LIMIT,
        CURSOR,
        CONSISTENCY_TOKEN,
    ];
}

/// A search cursor: the `created_at` (microseconds, big-endian i64) and the
/// cart id of the last cart of a page.
pub const CURSOR_PREFIX: &str = "c1.";
pub const CURSOR_BYTES: usize = 24;

/// `GET /carts/{cart_id}`.
pub mod cart {
    use super::*;

    pub const AS_OF_VERSION: ParamSpec = ParamSpec::query(
        "as_of_version",
        Param::Integer {
            min: 1,
            max: i64::MAX as u64,
        },
        "The cart as it was after its event at this stream version, folded from the event \
         store. Not with `as_of`",
    );
    pub const AS_OF: ParamSpec = ParamSpec::query(
        "as_of",
        Param::DateTime,
        "The cart as it was at this instant, folded from the event store. Not with \
         `as_of_version`",
    );
    pub const ALL: &[ParamSpec] = &[CONSISTENCY_TOKEN, AS_OF_VERSION, AS_OF];
    /// Between parameters, beyond JSON Schema: `history::as_of` refuses it.
    pub const RULES: &[&str] = &["at most one of as_of_version and as_of"];
}

pub const CONSISTENCY: &[ParamSpec] = &[CONSISTENCY_TOKEN];

/// `GET /carts/{cart_id}/history`.
pub mod history {
    use super::*;

    pub const AFTER: ParamSpec = ParamSpec::query(
        "after",
        Param::Integer {
            min: 0,
            max: i64::MAX as u64,
        },
        "List the events after this stream version (default 0: from the first)",
    );
    pub const ALL: &[ParamSpec] = &[AFTER, LIMIT];
}

/// `GET /carts/{cart_id}/live`.
pub mod live {
    use super::*;

    pub const LAST_EVENT_ID: ParamSpec = ParamSpec::header(
        "Last-Event-ID",
        Param::Integer {
            min: 0,
            max: i64::MAX as u64,
        },
        "The last version received: the stream resumes after it",
    );
    pub const ALL: &[ParamSpec] = &[LAST_EVENT_ID];
}

/// `GET /reports/sales`.
pub mod report {
    use super::*;

    pub const INTERVALS: &[&str] = &["hour", "day", "month"];
    pub const DIMENSIONS: &[&str] = &["product", "seller", "currency", "payment_method"];
    pub const STATUSES: &[&str] = &["all", "open", "paid", "cancelled"];

    pub const INTERVAL: ParamSpec = ParamSpec::query(
        "interval",
        Param::Choice(INTERVALS),
        "Time buckets (UTC). None: one bucket for the range",
    );
    pub const GROUP_BY: ParamSpec = ParamSpec::query(
        "group_by",
        Param::Choice(DIMENSIONS),
        "Buckets are always per currency too",
    );
    pub const FROM: ParamSpec = ParamSpec::query(
        "from",
        Param::DateOrDateTime,
        "Start, inclusive: a date (its midnight UTC) or a time. Before `to`",
    );
    pub const TO: ParamSpec = ParamSpec::query(
        "to",
        Param::DateOrDateTime,
        "End: a date is inclusive (the whole day), a time exclusive",
    );
    pub const STATUS: ParamSpec = ParamSpec::query(
        "status",
        Param::Choice(STATUSES),
        "Which carts count: `all` (default: every active line), `open` (open and checking \
         out), `paid` (confirmed sales only) or `cancelled` (compensated checkouts)",
    );
    /// Between parameters, beyond JSON Schema: the handler refuses it.
    pub const RULES: &[&str] =
        &["from < to, when both are given (a date as `to` means the next midnight)"];
    pub const ALL: &[ParamSpec] = &[INTERVAL, GROUP_BY, FROM, TO, STATUS, CONSISTENCY_TOKEN];
}

/// Documents a list of specs as an operation's parameters.
macro_rules! documented {
    ($($name:ident => $specs:path),* $(,)?) => {
        $(
            pub struct $name;
            impl utoipa::IntoParams for $name {
                fn into_params(
                    _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
                ) -> Vec<utoipa::openapi::path::Parameter> {
                    params::document_params($specs)
                }
            }
        )*
    };
}

documented!(
    SearchParams => search::ALL,
    CartParams => cart::ALL,
    ConsistencyParams => CONSISTENCY,
    HistoryParams => history::ALL,
    LiveParams => live::ALL,
    ReportParams => report::ALL,
);

/// The parameters a request gave, read only through the specs of its
/// operation.
pub struct Given<'a> {
    specs: &'static [ParamSpec],
    query: &'a [(String, String)],
    headers: &'a HeaderMap,
}

fn invalid(spec: &ParamSpec, value: &str) -> ApiError {
    match spec.rule.check(spec.name, value) {
        Err(problem) => ApiError::bad_request(problem.code, problem.message),
        Ok(()) => ApiError::bad_request(
            "invalid_parameter",
            format!("`{}` cannot be read: {value:?}", spec.name),
        ),
    }
}

impl<'a> Given<'a> {
    /// Refuses a query parameter given twice. `specs` is the `ALL` list of
    /// the operation: it may read no other.
    pub fn new(
        specs: &'static [ParamSpec],
        query: &'a [(String, String)],
        headers: &'a HeaderMap,
    ) -> Result<Self, ApiError> {
        // One pass with a set: a query string of thousands of parameters
        // costs linear time, not quadratic (issue 29).
        let mut seen = std::collections::HashSet::with_capacity(query.len());
        for (name, _) in query {
            if !seen.insert(name.as_str()) {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("`{name}` is given more than once"),
                ));
            }
        }
        Ok(Given {
            specs,
            query,
            headers,
        })
    }

    /// The raw value of a parameter of this operation, checked by its rule.
    pub fn text(&self, spec: &ParamSpec) -> Result<Option<&'a str>, ApiError> {
        debug_assert!(
            self.specs.iter().any(|s| s.name == spec.name),
            "`{}` is read but not documented for this operation",
            spec.name
        );
        let value = if spec.header {
            match self.headers.get(spec.name) {
                None => None,
                Some(v) => Some(v.to_str().map_err(|_| invalid(spec, "\u{FFFD}"))?),
            }
        } else {
            self.query
                .iter()
                .find(|(name, _)| name == spec.name)
                .map(|(_, v)| v.as_str())
        };
        spec.read(value)
            .map_err(|problem| ApiError::bad_request(problem.code, problem.message))
    }

    pub fn integer(&self, spec: &ParamSpec) -> Result<Option<u64>, ApiError> {
        self.text(spec)?
            .map(|v| v.parse().map_err(|_| invalid(spec, v)))
            .transpose()
    }

    pub fn datetime(&self, spec: &ParamSpec) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.text(spec)?
            .map(|v| contract::parse_datetime(v).ok_or_else(|| invalid(spec, v)))
            .transpose()
    }

    /// The value a word of a [`Param::Choice`] names: the word as the
    /// type's own (serde) name of it, so the list is the only table.
    pub fn choice<T: serde::de::DeserializeOwned>(
        &self,
        spec: &ParamSpec,
    ) -> Result<Option<T>, ApiError> {
        self.text(spec)?
            .map(|word| {
                serde_json::from_value(serde_json::Value::String(word.to_owned())).map_err(|_| {
                    ApiError::bad_request(
                        "invalid_parameter",
                        format!("`{}` has no meaning for {word:?}", spec.name),
                    )
                })
            })
            .transpose()
    }

    /// A report bound: a date means its midnight (UTC), or the next one for
    /// an inclusive end; a time is taken as is.
    pub fn bound(
        &self,
        spec: &ParamSpec,
        inclusive_end: bool,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(v) = self.text(spec)? else {
            return Ok(None);
        };
        if let Some(day) = contract::parse_date(v) {
            let day: Option<NaiveDate> = match inclusive_end {
                true => day.succ_opt(),
                false => Some(day),
            };
            return day
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| Some(t.and_utc()))
                .ok_or_else(|| invalid(spec, v));
        }
        contract::parse_datetime(v)
            .map(Some)
            .ok_or_else(|| invalid(spec, v))
    }

    /// The consistency token, if given.
    pub fn consistency_token(&self) -> Result<Option<token::ConsistencyToken>, ApiError> {
        let malformed = || {
            ApiError::bad_request(
                "invalid_consistency_token",
                "the consistency token is malformed: pass the `consistency_token` of a `202` as it is",
            )
        };
        let text = self.text(&CONSISTENCY_TOKEN).map_err(|_| malformed())?;
        text.map(|t| token::ConsistencyToken::decode(t).map_err(|_| malformed()))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::report;
    use salestrack_core::search::{ReportDimension, ReportInterval, ReportStatus};
    use serde::de::DeserializeOwned;

    /// Each word a report parameter documents names a value of its type,
    /// and each names a different one.
    fn names<T: DeserializeOwned + PartialEq + std::fmt::Debug>(words: &[&str]) {
        let values: Vec<T> = words
            .iter()
            .map(|w| {
                serde_json::from_value(serde_json::Value::String((*w).to_owned()))
                    .unwrap_or_else(|e| panic!("{w}: {e}"))
            })
            .collect();
        for (i, v) in values.iter().enumerate() {
            assert!(!values[..i].contains(v), "{v:?} twice");
        }
    }

    #[test]
    fn every_report_word_names_a_value() {
        names::<ReportInterval>(report::INTERVALS);
        names::<ReportDimension>(report::DIMENSIONS);
        names::<ReportStatus>(report::STATUSES);
    }
}
