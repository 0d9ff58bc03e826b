//! The JSON Schema of each input rule of core's [`contract`]: lengths,
//! bounds and enums from the rule, patterns built from the very predicates
//! the checks use. This module's tests hold every pattern to its check on
//! generated values: a pattern and the check it describes accept exactly
//! the same strings.

use salestrack_core::contract::{self, is_refused_control, Text, MONEY_INTEGER_DIGITS};
use salestrack_core::money::MAX_SCALE;
use std::sync::LazyLock;
use utoipa::openapi::schema::{
    KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

/// The end of a pattern: `$` as ECMA 262 (JSON Schema's dialect) reads it.
/// Python's `re`, which schemathesis and many clients use, also lets `$`
/// match before a final newline ("5\n" would pass a money pattern); a
/// lookahead that nothing follows means the same in both.
pub const END: &str = "(?![\\s\\S])";

/// A text field: 1..=`max` characters, some of them not blank, none refused.
pub fn text(rule: Text) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(rule.max))
        .pattern(Some(TEXT_PATTERN.as_str()))
        .build()
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

pub static UUID_PATTERN: LazyLock<String> = LazyLock::new(|| {
    format!("^[0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{12}}{END}")
});

pub fn uuid() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .pattern(Some(UUID_PATTERN.as_str()))
        .build()
}

/// An amount as a JSON string: plain decimal, no sign, no exponent, no
/// leading zeros, at most [`MAX_SCALE`] decimals.
static MONEY_PATTERN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "^(0|[1-9][0-9]{{0,{}}})(\\.[0-9]{{1,{MAX_SCALE}}})?{END}",
        MONEY_INTEGER_DIGITS - 1
    )
});

pub fn money() -> RefOr<Schema> {
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

pub fn integer(min: i64, max: i64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
        .build()
}

pub fn currency() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(contract::currency_codes()))
        .description(Some("An ISO 4217 code, uppercase"))
        .build()
}

pub fn datetime() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
}

pub fn date() -> Object {
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

pub fn pattern(pattern: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use salestrack_core::contract::{money_limit, parse_money, parse_uuid};
    use serde_json::Value;

    /// The pattern for the `regex` crate, whose `$` is ECMA's (end of text).
    pub(crate) fn regex(pattern: &str) -> regex::Regex {
        regex::Regex::new(&pattern.replace(END, "$")).expect("a valid pattern")
    }

    #[test]
    fn the_text_classes_need_no_character_beyond_the_basic_plane() {
        let beyond = (0x1_0000..=0x10_FFFF_u32)
            .filter_map(char::from_u32)
            .find(|c| c.is_whitespace() || is_refused_control(*c));
        assert_eq!(beyond, None);
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
    }
}
