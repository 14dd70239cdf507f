//! Amounts in integer minor units shown as people read them: `EUR 1,234.50`, `JPY 1,500`,
//! `KWD 1.500`. The number of decimals is the currency's (ISO 4217, as Stripe counts them), so a
//! JPY amount of 1500 is ¥1,500 and never ¥15.00. The code is shown rather than a symbol: `$`
//! alone is ambiguous between USD, CAD, AUD and others.

/// Not a three-letter currency code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a three-letter ISO 4217 currency code")]
pub struct InvalidCurrency(pub String);

/// Currencies without minor units (Stripe's zero-decimal list).
const ZERO_DECIMAL: &[&str] =
    &["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"];
/// Currencies with three decimals.
const THREE_DECIMAL: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

/// A validated, upper-case currency code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Currency(String);

impl Currency {
    /// Accepts `eur` or `EUR`.
    pub fn parse(raw: &str) -> Result<Self, InvalidCurrency> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(Self(raw.to_ascii_uppercase()))
        } else {
            Err(InvalidCurrency(raw.chars().take(16).collect()))
        }
    }

    /// The upper-case ISO 4217 code (`EUR`), as shown in front of amounts.
    pub fn code(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point.
    pub fn decimals(&self) -> u32 {
        if ZERO_DECIMAL.contains(&self.0.as_str()) {
            0
        } else if THREE_DECIMAL.contains(&self.0.as_str()) {
            3
        } else {
            2
        }
    }

    /// `minor` formatted with the code: `EUR 1,234.50`, `JPY -1,500`.
    pub fn format(&self, minor: i64) -> String {
        let decimals = self.decimals();
        let unit = 10u64.pow(decimals);
        let abs = minor.unsigned_abs();
        let (whole, fraction) = (abs / unit, abs % unit);
        let sign = if minor < 0 { "-" } else { "" };
        let whole = group_thousands(whole);
        if decimals == 0 {
            format!("{} {sign}{whole}", self.0)
        } else {
            format!("{} {sign}{whole}.{fraction:0width$}", self.0, width = decimals as usize)
        }
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(minor: i64, currency: &str) -> String {
        Currency::parse(currency).unwrap().format(minor)
    }

    #[test]
    fn decimals_follow_the_currency() {
        assert_eq!(fmt(123450, "eur"), "EUR 1,234.50");
        assert_eq!(fmt(5, "usd"), "USD 0.05");
        assert_eq!(fmt(0, "gbp"), "GBP 0.00");
        assert_eq!(fmt(1500, "jpy"), "JPY 1,500");
        assert_eq!(fmt(1500, "KRW"), "KRW 1,500");
        assert_eq!(fmt(1500, "kwd"), "KWD 1.500");
        assert_eq!(fmt(-250, "eur"), "EUR -2.50");
        assert_eq!(fmt(100_000_000, "usd"), "USD 1,000,000.00");
        assert_eq!(fmt(i64::MIN, "jpy"), "JPY -9,223,372,036,854,775,808");
    }

    #[test]
    fn codes_are_three_letters() {
        for bad in ["", "eu", "euro", "e1r", "€ur", "<b>"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }
}
