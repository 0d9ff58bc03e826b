//! The query and header parameters of the API: each one's rule, used by the
//! handler to parse it and by the document to describe it.

use crate::schema::{self, END};
use salestrack_core::contract::{parse_date, parse_datetime, Problem, Text};
use salestrack_core::money::Currency;
use std::str::FromStr;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// The rule of one query or header parameter, used by the handler to parse
/// it and by the document to describe it.
#[derive(Debug, Clone, Copy)]
pub enum Param {
    Text(Text),
    /// An integer in decimal digits (no sign, no leading zeros).
    Integer {
        min: u64,
        max: u64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    Currency,
    DateTime,
    /// A date (`YYYY-MM-DD`) or an RFC 3339 date-time.
    DateOrDateTime,
    /// A key chosen by the client: 1..=`max` visible ASCII characters.
    Key {
        max: usize,
    },
    /// An opaque token: a prefix and a fixed number of base64url bytes.
    Token {
        prefix: &'static str,
        bytes: usize,
    },
}

impl Param {
    /// `Ok` when `value` follows the rule; the handler then reads it with
    /// its own type (the integer, the date, the decoded token).
    pub fn check(&self, name: &str, value: &str) -> Result<(), Problem> {
        let invalid = |what: String| Problem::new("invalid_parameter", what);
        match self {
            Param::Text(text) => text.check(name, value),
            Param::Integer { min, max } => {
                let canonical = !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && (value == "0" || !value.starts_with('0'));
                match value.parse::<u64>() {
                    Ok(n) if canonical && (min..=max).contains(&&n) => Ok(()),
                    _ => Err(invalid(format!(
                        "`{name}` must be an integer in {min}..={max}, got {value:?}"
                    ))),
                }
            }
            Param::Choice(words) => match words.contains(&value) {
                true => Ok(()),
                false => Err(invalid(format!(
                    "`{name}` must be one of {}, got {value:?}",
                    words.join(", ")
                ))),
            },
            Param::Currency => match Currency::from_str(value) {
                Ok(_) => Ok(()),
                Err(_) => Err(invalid(format!(
                    "`{name}` must be an ISO 4217 code such as \"EUR\", got {value:?}"
                ))),
            },
            Param::DateTime => match parse_datetime(value) {
                Some(_) => Ok(()),
                None => Err(invalid(format!(
                    "`{name}` must be an RFC 3339 date-time, got {value:?}"
                ))),
            },
            Param::DateOrDateTime => {
                match parse_date(value).is_some() || parse_datetime(value).is_some() {
                    true => Ok(()),
                    false => Err(invalid(format!(
                    "`{name}` must be a date (YYYY-MM-DD) or an RFC 3339 date-time, got {value:?}"
                ))),
                }
            }
            Param::Key { max } => {
                match !value.is_empty()
                    && value.len() <= *max
                    && value.bytes().all(|b| b.is_ascii_graphic())
                {
                    true => Ok(()),
                    false => Err(invalid(format!(
                        "`{name}` must be 1..={max} visible ASCII characters"
                    ))),
                }
            }
            Param::Token { prefix, bytes } => {
                let decoded = value.strip_prefix(prefix).and_then(|body| {
                    use base64::Engine;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(body)
                        .ok()
                });
                match decoded {
                    Some(b) if b.len() == *bytes => Ok(()),
                    _ => Err(invalid(format!(
                        "`{name}` is not a token this API gave out"
                    ))),
                }
            }
        }
    }

    pub fn schema(&self) -> RefOr<Schema> {
        match self {
            Param::Text(text) => schema::text(*text).into(),
            Param::Integer { min, max } => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(*min))
                .maximum(Some(*max))
                .build()
                .into(),
            Param::Choice(words) => ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(words.iter().copied()))
                .build()
                .into(),
            Param::Currency => schema::currency().into(),
            Param::DateTime => schema::datetime().into(),
            Param::DateOrDateTime => AnyOfBuilder::new()
                .item(schema::date())
                .item(schema::datetime())
                .into(),
            Param::Key { max } => schema::pattern(&format!("^[!-~]{{1,{max}}}{END}")).into(),
            Param::Token { prefix, bytes } => {
                schema::pattern(&schema::base64url_pattern(prefix, *bytes)).into()
            }
        }
    }
}

/// One parameter of an operation: where it goes, its name, its rule.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub header: bool,
    pub rule: Param,
    pub description: &'static str,
}

impl ParamSpec {
    pub const fn query(name: &'static str, rule: Param, description: &'static str) -> Self {
        ParamSpec {
            name,
            header: false,
            rule,
            description,
        }
    }

    pub const fn header(name: &'static str, rule: Param, description: &'static str) -> Self {
        ParamSpec {
            name,
            header: true,
            rule,
            description,
        }
    }

    /// The parameter's value checked against its rule; `None` when absent.
    pub fn read<'a>(&self, value: Option<&'a str>) -> Result<Option<&'a str>, Problem> {
        value
            .map(|v| self.rule.check(self.name, v).map(|()| v))
            .transpose()
    }

    pub fn document(&self) -> utoipa::openapi::path::Parameter {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::Required;
        ParameterBuilder::new()
            .name(self.name)
            .parameter_in(if self.header {
                ParameterIn::Header
            } else {
                ParameterIn::Query
            })
            .required(Required::False)
            .description(Some(self.description))
            .schema(Some(self.rule.schema()))
            .build()
    }
}

/// The parameters of a list of specs, for `IntoParams`.
pub fn document_params(specs: &[ParamSpec]) -> Vec<utoipa::openapi::path::Parameter> {
    specs.iter().map(ParamSpec::document).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::base64url_pattern;
    use proptest::prelude::*;

    fn regex(pattern: &str) -> regex::Regex {
        regex::Regex::new(&pattern.replace(END, "$")).expect("a valid pattern")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

        #[test]
        fn a_token_pattern_accepts_what_the_decoder_accepts(
            body in "[A-Za-z0-9_=+/-]{40,45}",
            bytes in prop::sample::select(vec![24usize, 32]),
        ) {
            let rule = Param::Token { prefix: "x1.", bytes };
            let s = format!("x1.{body}");
            let pattern = base64url_pattern("x1.", bytes);
            prop_assert_eq!(rule.check("t", &s).is_ok(), regex(&pattern).is_match(&s), "{:?}", s);
        }

        #[test]
        fn an_integer_parameter_is_canonical_digits_in_range(s in "[-+0-9 a]{0,6}") {
            let rule = Param::Integer { min: 1, max: 100 };
            let by_schema = regex("^(0|[1-9][0-9]*)$").is_match(&s)
                && s.parse::<u64>().is_ok_and(|n| (1..=100).contains(&n));
            prop_assert_eq!(rule.check("n", &s).is_ok(), by_schema, "{:?}", s);
        }
    }
}
