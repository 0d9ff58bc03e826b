//! The rules of the inputs, each said once: the value checks validation is
//! built from ([`Text::check`], [`parse_money`], [`parse_uuid`], ...). The
//! API layer (`salestrack-api`) describes each rule in the OpenAPI document
//! from these same checks and predicates, and its tests hold the two
//! together: the published contract and what the server enforces cannot
//! drift apart.

use crate::money::{Money, MAX_SCALE};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

/// What is wrong with one value: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------- text

/// Text refuses control characters (NUL and the other C0 and C1 controls,
/// DEL), except tab and line breaks, which addresses and descriptions may
/// hold. Other characters (right-to-left marks, combining marks, emoji) are
/// text like any other.
pub fn is_refused_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// A text field: 1..=`max` characters (Unicode scalar values, not bytes),
/// not blank (some character that is not white space), no refused control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    pub max: usize,
}

impl Text {
    pub fn check(&self, name: &str, s: &str) -> Result<(), Problem> {
        let chars = s.chars().count();
        if let Some(c) = s.chars().find(|c| is_refused_control(*c)) {
            Err(Problem::new(
                "control_character",
                format!(
                    "`{name}` must not contain control characters, found U+{:04X}",
                    u32::from(c)
                ),
            ))
        } else if s.chars().all(char::is_whitespace) {
            Err(Problem::new(
                "too_short",
                format!("`{name}` must not be blank"),
            ))
        } else if chars > self.max {
            Err(Problem::new(
                "too_long",
                format!(
                    "`{name}` must be at most {} characters, got {chars}",
                    self.max
                ),
            ))
        } else {
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- ids

/// A UUID in its hyphenated form (`8-4-4-4-12` hex digits, either case), the
/// only form the API takes and gives.
pub fn parse_uuid(s: &str) -> Option<uuid::Uuid> {
    let hyphenated = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    hyphenated.then(|| uuid::Uuid::parse_str(s).ok()).flatten()
}

// ---------------------------------------------------------------- money

/// Digits before the decimal point of an amount: below 10^14, so that every
/// amount in units of 10^-4 fits the stores' 64-bit integers with room to
/// add (sales lines sum as integers).
pub const MONEY_INTEGER_DIGITS: u32 = 14;

/// The bound every amount stays below.
pub fn money_limit() -> Decimal {
    Decimal::from(10_i64.pow(MONEY_INTEGER_DIGITS))
}

/// A money amount: a JSON string (plain decimal, no sign, no exponent, no
/// leading zeros, at most [`MAX_SCALE`] decimals) or a JSON number
/// (>= 0, below 10^14, a multiple of 10^-4), parsed as a decimal literal,
/// never through a float.
pub fn parse_money(name: &str, value: &Value) -> Result<Money, Problem> {
    let decimal = match value {
        Value::String(s) => parse_money_text(name, s)?,
        Value::Number(n) => parse_money_number(name, &n.to_string())?,
        _ => {
            return Err(Problem::new(
                "wrong_type",
                format!("`{name}` must be a decimal string or number"),
            ))
        }
    };
    if decimal >= money_limit() {
        return Err(Problem::new(
            "out_of_range",
            format!(
                "`{name}` must be below 10^{MONEY_INTEGER_DIGITS}, got {}",
                decimal.normalize()
            ),
        ));
    }
    Money::non_negative(decimal).ok_or_else(|| {
        Problem::new(
            "must_not_be_negative",
            format!("`{name}` must be >= 0, got {decimal}"),
        )
    })
}

fn parse_money_text(name: &str, s: &str) -> Result<Decimal, Problem> {
    let (sign, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty());
    let invalid = || {
        Problem::new(
            "invalid_decimal",
            format!("`{name}` must be a plain decimal such as \"199.99\", got {s:?}"),
        )
    };
    if !plain {
        return Err(invalid());
    }
    if sign {
        return Err(Problem::new(
            "must_not_be_negative",
            format!("`{name}` must be >= 0 and unsigned, got {s:?}"),
        ));
    }
    if int.len() > 1 && int.starts_with('0') {
        return Err(Problem::new(
            "invalid_decimal",
            format!("`{name}` must not have leading zeros, got {s:?}"),
        ));
    }
    if frac.len() > MAX_SCALE as usize {
        return Err(too_precise(name, s));
    }
    if int.len() > MONEY_INTEGER_DIGITS as usize {
        return Err(Problem::new(
            "out_of_range",
            format!("`{name}` must be below 10^{MONEY_INTEGER_DIGITS}, got {s}"),
        ));
    }
    Decimal::from_str_exact(s).map_err(|_| invalid())
}

fn parse_money_number(name: &str, literal: &str) -> Result<Decimal, Problem> {
    let parsed = Decimal::from_str_exact(literal).or_else(|_| Decimal::from_scientific(literal));
    match parsed {
        Ok(d) if d.normalize().scale() > MAX_SCALE => Err(too_precise(name, literal)),
        Ok(d) => Ok(d),
        Err(_) => Err(Problem::new(
            "invalid_decimal",
            format!("`{name}` is not a decimal this API can hold: {literal}"),
        )),
    }
}

fn too_precise(name: &str, literal: &str) -> Problem {
    Problem::new(
        "too_precise",
        format!("`{name}` may have at most {MAX_SCALE} decimal places, got {literal}"),
    )
}

// ---------------------------------------------------------------- integers

/// A JSON integer in `min..=max`. Like JSON Schema's `integer`, a number with
/// a zero fraction (`2.0`, `1e2`) counts.
pub fn parse_json_integer(name: &str, value: &Value, min: i64, max: i64) -> Result<i64, Problem> {
    let Value::Number(n) = value else {
        return Err(not_an_integer(name));
    };
    let literal = n.to_string();
    let Ok(decimal) =
        Decimal::from_str_exact(&literal).or_else(|_| Decimal::from_scientific(&literal))
    else {
        // Beyond a decimal's 28 digits: far out of any range.
        return Err(out_of_range(name, min, max, &literal));
    };
    if !decimal.fract().is_zero() {
        return Err(not_an_integer(name));
    }
    match i64::try_from(decimal) {
        Ok(n) if n <= 0 && min == 1 => Err(Problem::new(
            "must_be_positive",
            format!("`{name}` must be > 0, got {n}"),
        )),
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(out_of_range(name, min, max, &literal)),
    }
}

fn not_an_integer(name: &str) -> Problem {
    Problem::new("wrong_type", format!("`{name}` must be an integer"))
}

fn out_of_range(name: &str, min: i64, max: i64, literal: &str) -> Problem {
    Problem::new(
        "out_of_range",
        format!("`{name}` must be an integer in {min}..={max}, got {literal}"),
    )
}

// ---------------------------------------------------------------- others

/// Every ISO 4217 code the server takes, uppercase.
pub fn currency_codes() -> Vec<&'static str> {
    use iso_currency::IntoEnumIterator;
    iso_currency::Currency::iter().map(|c| c.code()).collect()
}

/// An RFC 3339 date-time with an offset (`Z` or `±hh:mm`).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A calendar date, `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let shaped = s.len() == 10
        && s.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn every_currency_code_of_the_enum_and_only_those_parse() {
        let listed = currency_codes();
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                for c in b'A'..=b'Z' {
                    let code = String::from_utf8(vec![a, b, c]).unwrap_or_default();
                    assert_eq!(
                        crate::money::Currency::from_str(&code).is_ok(),
                        listed.contains(&code.as_str()),
                        "{code}"
                    );
                }
            }
        }
    }
}
