//! The rules of the inputs, each said once. Validation checks a value with a
//! rule ([`Text::check`], [`parse_money`], [`Param::parse`], ...) and the
//! OpenAPI document describes it with the same rule's `schema`: the published
//! contract and what the server enforces cannot drift apart.
//!
//! What JSON Schema can say is in the schemas (lengths, patterns built from
//! the very predicates the checks use, bounds, enums). What it cannot say (a
//! rule between fields, such as `subtotal = amount * quantity - discounts`)
//! is listed in the operation's `x-salestrack-rules` extension and in its
//! description, by [`cross_field_rules`].

use crate::money::{Money, MAX_SCALE};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;
use std::sync::LazyLock;
use utoipa::openapi::schema::{
    AnyOfBuilder, KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

/// What is wrong with one value: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    fn new(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
        }
    }
}

/// The end of a pattern: `$` as ECMA 262 (JSON Schema's dialect) reads it.
/// Python's `re`, which schemathesis and many clients use, also lets `$`
/// match before a final newline ("5\n" would pass a money pattern); a
/// lookahead that nothing follows means the same in both.
pub const END: &str = "(?![\\s\\S])";

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

    pub fn schema(&self) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(self.max))
            .pattern(Some(TEXT_PATTERN.as_str()))
            .build()
    }
}

/// Some character neither white space nor refused, among characters that
/// are not refused: the two predicates of [`Text::check`], as classes.
static TEXT_PATTERN: LazyLock<String> = LazyLock::new(|| {
    let refused = class(is_refused_control);
    let blank_or_refused = class(|c| c.is_whitespace() || is_refused_control(c));
    format!("^[^{refused}]*[^{blank_or_refused}][^{refused}]*{END}")
});

/// The characters `keep` holds for, as the body of a regex class in
/// `\uXXXX` ranges (ECMA 262 and Python read them alike). Only the Basic
/// Multilingual Plane is scanned: the predicates used here hold for no
/// character beyond it (a test checks it).
fn class(keep: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    let mut run: Option<(u32, u32)> = None;
    let flush = |run: (u32, u32), out: &mut String| {
        out.push_str(&format!("\\u{:04X}", run.0));
        if run.1 > run.0 {
            out.push_str(&format!("-\\u{:04X}", run.1));
        }
    };
    for code in 0..=0xFFFF_u32 {
        let held = char::from_u32(code).is_some_and(&keep);
        run = match (run, held) {
            (Some((start, end)), true) if end + 1 == code => Some((start, code)),
            (Some(r), true) => {
                flush(r, &mut out);
                Some((code, code))
            }
            (None, true) => Some((code, code)),
            (Some(r), false) => {
                flush(r, &mut out);
                None
            }
            (None, false) => None,
        };
    }
    if let Some(r) = run {
        flush(r, &mut out);
    }
    out
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

pub static UUID_PATTERN: LazyLock<String> = LazyLock::new(|| {
    format!("^[0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{12}}{END}")
});

pub fn uuid_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .pattern(Some(UUID_PATTERN.as_str()))
        .build()
}

// ---------------------------------------------------------------- money

/// Digits before the decimal point of an amount: below 10^14, so that every
/// amount in units of 10^-4 fits the stores' 64-bit integers with room to
/// add (sales lines sum as integers).
pub const MONEY_INTEGER_DIGITS: u32 = 14;

/// An amount as a JSON string: plain decimal, no sign, no exponent, no
/// leading zeros, at most [`MAX_SCALE`] decimals.
static MONEY_PATTERN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "^(0|[1-9][0-9]{{0,{}}})(\\.[0-9]{{1,{MAX_SCALE}}})?{END}",
        MONEY_INTEGER_DIGITS - 1
    )
});

fn money_limit() -> Decimal {
    Decimal::from(10_i64.pow(MONEY_INTEGER_DIGITS))
}

/// A money amount: a JSON string ([`MONEY_PATTERN`]) or a JSON number
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

pub fn money_schema() -> RefOr<Schema> {
    let step = 10_f64.powi(-(MAX_SCALE as i32));
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(MONEY_PATTERN.as_str()))
                .examples(["199.99"]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .exclusive_maximum(Some(10_f64.powi(MONEY_INTEGER_DIGITS as i32)))
                .multiple_of(Some(step)),
        )
        .description(Some(format!(
            "A decimal amount >= 0 and below 10^{MONEY_INTEGER_DIGITS} with at most \
             {MAX_SCALE} decimal places, as a JSON string (preferred: exact in every \
             client) or number"
        )))
        .into()
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

pub fn integer_schema(min: i64, max: i64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
        .build()
}

// ---------------------------------------------------------------- others

/// Every ISO 4217 code the server takes, uppercase.
pub fn currency_codes() -> Vec<&'static str> {
    use iso_currency::IntoEnumIterator;
    iso_currency::Currency::iter().map(|c| c.code()).collect()
}

pub fn currency_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(currency_codes()))
        .description(Some("An ISO 4217 code, uppercase"))
        .build()
}

/// An RFC 3339 date-time with an offset (`Z` or `±hh:mm`).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn datetime_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
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

pub fn date_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .build()
}

/// `prefix` and then exactly `bytes` bytes in unpadded base64url: every
/// string of this shape decodes (the last character carries only the bits
/// that are left, the others are zero, as the decoder demands).
pub fn base64url_pattern(prefix: &str, bytes: usize) -> String {
    let bits = bytes * 8;
    let full = bits / 6;
    let left = bits % 6;
    let escaped: String = prefix
        .chars()
        .map(|c| match c {
            '.' | '-' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$'
            | '\\' => format!("\\{c}"),
            c => c.to_string(),
        })
        .collect();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = if left == 0 {
        String::new()
    } else {
        // Characters whose low (6 - left) bits are zero.
        let step = 1 << (6 - left);
        let chars: String = ALPHABET
            .iter()
            .step_by(step)
            .map(|b| char::from(*b))
            .collect();
        format!("[{}]", chars.replace('-', "\\-"))
    };
    format!("^{escaped}[A-Za-z0-9_-]{{{full}}}{last}{END}")
}

pub fn pattern_schema(pattern: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .build()
}

// ---------------------------------------------------------------- parameters

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
            Param::Currency => match crate::money::Currency::from_str(value) {
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
            Param::Text(text) => text.schema().into(),
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
            Param::Currency => currency_schema().into(),
            Param::DateTime => datetime_schema().into(),
            Param::DateOrDateTime => AnyOfBuilder::new()
                .item(date_schema())
                .item(datetime_schema())
                .into(),
            Param::Key { max } => pattern_schema(&format!("^[!-~]{{1,{max}}}{END}")).into(),
            Param::Token { prefix, bytes } => {
                pattern_schema(&base64url_pattern(prefix, *bytes)).into()
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
    //! Each schema against its check, on generated values: a pattern and
    //! the check it describes accept exactly the same strings.
    use super::*;
    use proptest::prelude::*;

    /// The pattern for the `regex` crate, whose `$` is ECMA's (end of text).
    fn regex(pattern: &str) -> regex::Regex {
        regex::Regex::new(&pattern.replace(END, "$")).expect("a valid pattern")
    }

    #[test]
    fn the_text_classes_need_no_character_beyond_the_basic_plane() {
        let beyond = (0x1_0000..=0x10_FFFF_u32)
            .filter_map(char::from_u32)
            .find(|c| c.is_whitespace() || is_refused_control(*c));
        assert_eq!(beyond, None);
    }

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

    fn tricky_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just(' '),
                Just('\t'),
                Just('\n'),
                Just('\u{0}'),
                Just('\u{85}'),
                Just('\u{A0}'),
                Just('\u{2028}'),
                Just('\u{3000}'),
                Just('\u{FEFF}'),
                Just('\u{7F}'),
                Just('a'),
                Just('é'),
                Just('\u{1F600}'),
                any::<char>(),
            ],
            0..12,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

        #[test]
        fn the_text_schema_accepts_what_the_check_accepts(s in tricky_text(), max in 1usize..8) {
            let text = Text { max };
            let by_schema = regex(&TEXT_PATTERN).is_match(&s) && s.chars().count() <= max;
            prop_assert_eq!(text.check("f", &s).is_ok(), by_schema, "{:?}", s);
        }

        #[test]
        fn the_money_pattern_accepts_what_the_parser_accepts(s in "[-0-9.e+ ]{0,20}") {
            let parsed = parse_money("m", &Value::String(s.clone())).is_ok();
            prop_assert_eq!(parsed, regex(&MONEY_PATTERN).is_match(&s), "{:?}", s);
        }

        #[test]
        fn the_money_number_bounds_are_the_parsers(units in 0u64..=u64::MAX, scale in 0u32..8) {
            let literal = Decimal::new(units as i64 & i64::MAX, scale).to_string();
            let value: Value = serde_json::from_str(&literal).expect("a JSON number");
            let decimal = Decimal::from_str_exact(&literal).expect("a decimal");
            let by_schema = decimal < money_limit() && decimal.normalize().scale() <= MAX_SCALE;
            prop_assert_eq!(parse_money("m", &value).is_ok(), by_schema, "{}", literal);
        }

        #[test]
        fn the_uuid_pattern_accepts_what_the_parser_accepts(
            s in "[0-9a-fA-FgG{}:-]{30,40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ) {
            prop_assert_eq!(parse_uuid(&s).is_some(), regex(&UUID_PATTERN).is_match(&s), "{:?}", s);
        }

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
