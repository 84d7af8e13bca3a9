//! Kubernetes `Quantity` strings for metric values: f64 in, canonical wire string out; never NaN, ±Inf or `-0`.
//!
//! The HPA reads every value with `MilliValue()`, which rounds up to milli-units
//! (`k8s.io/apimachinery/pkg/api/resource`). So we emit whole numbers as plain integers and everything
//! else as `ceil(v × 1000)` milli-units: the HPA then sees exactly the number we computed.

use std::fmt;

/// The largest magnitude whose milli-value still fits an `int64` (`MilliValue()` would overflow past it).
const MAX_MAGNITUDE: f64 = 9.2e15;

/// Floating-point noise below this many milli-units is rounded away, so that a rate of
/// `12.499999999999998` (one ulp off 12.5) is served as `12500m`, not `12501m`.
const NOISE_MILLIS: f64 = 1e-6;

/// Why a value cannot be served as a Quantity. The item is then dropped, never replaced by 0.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum QuantityError {
    /// NaN is not a number the HPA can use.
    #[error("value is NaN")]
    NaN,
    /// ±Inf, e.g. a division by a zero rate.
    #[error("value is infinite")]
    Infinite,
    /// Too large for the HPA's int64 milli-units.
    #[error("value {0} is out of range for a Kubernetes quantity")]
    OutOfRange(f64),
}

/// A value ready for the wire, in canonical Kubernetes Quantity form.
///
/// ```
/// use xroad_metrics_adapter::quantity::Quantity;
/// assert_eq!(Quantity::from_f64(12.5).unwrap().to_string(), "12500m");
/// assert_eq!(Quantity::from_f64(100.0).unwrap().to_string(), "100");
/// assert_eq!(Quantity::from_f64(0.0001).unwrap().to_string(), "1m");
/// assert!(Quantity::from_f64(f64::NAN).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    millis: i64,
}

impl Quantity {
    /// Converts `value`, rounding up to whole milli-units as the HPA does.
    pub fn from_f64(value: f64) -> Result<Self, QuantityError> {
        if value.is_nan() {
            return Err(QuantityError::NaN);
        }
        if value.is_infinite() {
            return Err(QuantityError::Infinite);
        }
        if value.abs() >= MAX_MAGNITUDE {
            return Err(QuantityError::OutOfRange(value));
        }
        let millis = value * 1000.0;
        let nearest = millis.round();
        let millis = if (millis - nearest).abs() <= NOISE_MILLIS {
            nearest
        } else {
            millis.ceil()
        };
        // The magnitude check keeps us inside i64; integers have no -0, so -0.0 becomes 0.
        Ok(Self {
            millis: millis as i64,
        })
    }

    /// A value of `millis` milli-units.
    pub fn from_millis(millis: i64) -> Self {
        Self { millis }
    }

    /// The value in milli-units, as `MilliValue()` reads it.
    pub fn millis(self) -> i64 {
        self.millis
    }

    /// The value as a float (exact for every value this type can hold that the HPA distinguishes).
    pub fn as_f64(self) -> f64 {
        self.millis as f64 / 1000.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis % 1000 == 0 {
            write!(f, "{}", self.millis / 1000)
        } else {
            write!(f, "{}m", self.millis)
        }
    }
}

/// `value` in nano-units, as metrics-server writes CPU usage (`0.1234` cores is `123400000n`): resource metrics
/// need a finer grain than the milli-units of [`Quantity`].
///
/// ```
/// assert_eq!(xroad_metrics_adapter::quantity::nanos(0.1234), "123400000n");
/// ```
pub fn nanos(value: f64) -> String {
    format!("{}n", (value * 1e9).round() as i64)
}

/// `value` rounded to a whole number, as metrics-server and the Prometheus Adapter write memory bytes.
///
/// ```
/// assert_eq!(xroad_metrics_adapter::quantity::whole(104870608.6), "104870609");
/// ```
pub fn whole(value: f64) -> String {
    format!("{}", value.round() as i64)
}

/// Why a Quantity string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a quantity (use e.g. 10, 1.5, 500m, 2k)")]
pub struct ParseQuantityError(String);

/// Reads a Kubernetes quantity string to a float, with the grammar of `k8s.io/apimachinery/pkg/api/resource`:
/// a signed decimal number, then a decimal SI suffix (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`), a
/// binary one (`Ki` to `Ei`) or a decimal exponent (`e3`, `E-2`).
///
/// ```
/// use xroad_metrics_adapter::quantity::parse;
/// assert_eq!(parse("123400000n").unwrap(), 0.1234);
/// assert_eq!(parse("1Ki").unwrap(), 1024.0);
/// assert_eq!(parse("1.5e3").unwrap(), 1500.0);
/// assert!(parse("1.5 k").is_err());
/// ```
pub fn parse(text: &str) -> Result<f64, ParseQuantityError> {
    let err = || ParseQuantityError(text.to_owned());
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let split = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err());
    }
    // Powers of ten as exponents, so that `123400000n` divides by 1e9 (exactly 0.1234) instead of multiplying
    // by 1e-9, which is not a binary fraction.
    let (power, binary) = match suffix {
        "n" => (-9, 1.0),
        "u" => (-6, 1.0),
        "m" => (-3, 1.0),
        "" => (0, 1.0),
        "k" => (3, 1.0),
        "M" => (6, 1.0),
        "G" => (9, 1.0),
        "T" => (12, 1.0),
        "P" => (15, 1.0),
        "E" => (18, 1.0),
        "Ki" => (0, 1024f64),
        "Mi" => (0, 1024f64.powi(2)),
        "Gi" => (0, 1024f64.powi(3)),
        "Ti" => (0, 1024f64.powi(4)),
        "Pi" => (0, 1024f64.powi(5)),
        "Ei" => (0, 1024f64.powi(6)),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power = &exponent[1..];
            let digits = power.strip_prefix(['+', '-']).unwrap_or(power);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            // Past ±400 every f64 has under- or overflowed already; the clamp keeps `-power` in range.
            (
                power.parse::<i32>().map_err(|_| err())?.clamp(-400, 400),
                1.0,
            )
        }
        _ => return Err(err()),
    };
    let value: f64 = number.parse().map_err(|_| err())?;
    let sign = if text.starts_with('-') { -1.0 } else { 1.0 };
    let scaled = if power < 0 {
        value / 10f64.powi(-power)
    } else {
        value * 10f64.powi(power)
    };
    Ok(sign * scaled * binary)
}

impl std::str::FromStr for Quantity {
    type Err = ParseQuantityError;

    /// Reads any Kubernetes quantity ([`parse`]), rounded up to milli-units as `MilliValue()` reads it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_f64(parse(text)?).map_err(|_| ParseQuantityError(text.to_owned()))
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(value: f64) -> String {
        Quantity::from_f64(value).unwrap().to_string()
    }

    #[test]
    fn whole_numbers_are_plain_integers() {
        assert_eq!(wire(0.0), "0");
        assert_eq!(wire(1.0), "1");
        assert_eq!(wire(100.0), "100");
        assert_eq!(wire(-3.0), "-3");
    }

    #[test]
    fn fractions_are_milli_units_rounded_up() {
        assert_eq!(wire(5.093), "5093m");
        assert_eq!(wire(1.5), "1500m");
        assert_eq!(wire(0.0001), "1m");
        assert_eq!(wire(12.3456), "12346m");
        assert_eq!(wire(-12.3456), "-12345m");
    }

    #[test]
    fn float_noise_is_rounded_to_the_intended_milli_value() {
        assert_eq!(wire(12.499999999999998), "12500m");
        assert_eq!(wire(12.500000000000002), "12500m");
        assert_eq!(wire(0.1 + 0.2), "300m");
        assert_eq!(wire(2.9999999999999996), "3");
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(wire(-0.0), "0");
        assert_eq!(wire(-0.0000000001), "0");
    }

    #[test]
    fn large_values_stay_exact_integers() {
        assert_eq!(wire(1e12), "1000000000000");
        assert_eq!(wire(9.1e15), "9100000000000000");
        assert_eq!(wire(123456789.25), "123456789250m");
    }

    #[test]
    fn nan_infinity_and_overflow_never_reach_the_wire() {
        assert_eq!(Quantity::from_f64(f64::NAN), Err(QuantityError::NaN));
        assert_eq!(
            Quantity::from_f64(f64::INFINITY),
            Err(QuantityError::Infinite)
        );
        assert_eq!(
            Quantity::from_f64(f64::NEG_INFINITY),
            Err(QuantityError::Infinite)
        );
        assert!(matches!(
            Quantity::from_f64(1e16),
            Err(QuantityError::OutOfRange(_))
        ));
    }

    #[test]
    fn wire_strings_and_hpa_targets_parse_back() {
        let millis = |s: &str| s.parse::<Quantity>().unwrap().millis();
        assert_eq!(millis("12500m"), 12_500);
        assert_eq!(millis("10"), 10_000);
        assert_eq!(millis("1.5"), 1_500);
        assert_eq!(millis("2k"), 2_000_000);
        assert!("".parse::<Quantity>().is_err());
        assert!("10x".parse::<Quantity>().is_err());
        assert!("ten".parse::<Quantity>().is_err());
        assert_eq!(millis("1e3"), 1_000_000);
        assert_eq!(millis("123400000n"), 124);
        assert_eq!(millis("1Ki"), 1_024_000);
        assert_eq!(millis("-1.5"), -1500);
        assert_eq!(millis(".5"), 500);
        for bad in [
            "", ".", "+", "1..2", "1e", "1e+", "1ee3", "1 k", "1KI", "e3", "1k2", "--1",
        ] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?}");
        }
        assert_eq!(Quantity::from_millis(16_666).to_string(), "16666m");
    }

    #[test]
    fn serializes_as_a_json_string() {
        let json = serde_json::to_string(&Quantity::from_f64(12.5).unwrap()).unwrap();
        assert_eq!(json, "\"12500m\"");
    }
}
