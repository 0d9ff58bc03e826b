//! Money and currency value types. Amounts are [`Decimal`] end to end.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A non-negative decimal amount.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(Decimal);

/// Most decimal places an amount may have: ISO 4217's finest minor unit
/// (CLF, UYW). Stores that sum money as integers count in these units.
pub const MAX_SCALE: u32 = 4;

/// `value` in units of 10^-[`MAX_SCALE`], if it has no finer digits and fits.
pub fn to_minor_units(value: Decimal) -> Option<i64> {
    let scaled = value.checked_mul(Decimal::from(10_i64.pow(MAX_SCALE)))?;
    scaled
        .fract()
        .is_zero()
        .then(|| i64::try_from(scaled.trunc()).ok())
        .flatten()
}

/// The inverse of [`to_minor_units`].
pub fn from_minor_units(units: i64) -> Decimal {
    Decimal::new(units, MAX_SCALE)
}

/// How reports print a sum: no trailing zeros beyond the cents.
pub fn display_sum(value: Decimal) -> Decimal {
    let mut normal = value.normalize();
    if normal.scale() < 2 {
        normal.rescale(2);
    }
    normal
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    pub fn non_negative(value: Decimal) -> Option<Self> {
        (!value.is_sign_negative() || value.is_zero()).then_some(Money(value.normalize_sign()))
    }

    pub fn value(&self) -> Decimal {
        self.0
    }
}

trait NormalizeSign {
    fn normalize_sign(self) -> Self;
}

impl NormalizeSign for Decimal {
    /// `-0` parses as a negative zero; store it as plain zero.
    fn normalize_sign(mut self) -> Self {
        if self.is_zero() {
            self.set_sign_positive(true);
        }
        self
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ISO 4217 currency code, validated against the ISO list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub fn as_str(&self) -> &'static str {
        self.0.code()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an ISO 4217 currency code: {0:?}")]
pub struct UnknownCurrency(pub String);

impl FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        iso_currency::Currency::from_code(s)
            .map(Currency)
            .ok_or_else(|| UnknownCurrency(s.to_owned()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn minor_units_round_trip_every_amount_of_four_decimals() {
        for text in ["0", "0.0001", "199.99", "12345678901.2345"] {
            let units = to_minor_units(d(text)).unwrap_or(-1);
            assert_eq!(from_minor_units(units), d(text), "{text}");
        }
    }

    #[test]
    fn an_amount_finer_than_four_decimals_has_no_minor_units() {
        assert_eq!(to_minor_units(d("0.00001")), None);
        assert_eq!(to_minor_units(d("1.50000")), Some(15_000));
    }

    #[test]
    fn sums_print_with_at_least_cents_and_no_trailing_zeros() {
        assert_eq!(display_sum(d("0.2000")).to_string(), "0.20");
        assert_eq!(display_sum(d("3")).to_string(), "3.00");
        assert_eq!(display_sum(d("0.1234")).to_string(), "0.1234");
    }
}
