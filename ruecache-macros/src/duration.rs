//! Durations written as strings: `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"7d"`, or `"none"`.

/// The units, largest first, with their length in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

const EXPECTED_UNITS: &str = "expected `ms`, `s`, `m`, `h` or `d`";

/// A parsed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Duration {
    /// `"none"`.
    Never,
    /// A length in milliseconds (may be zero: the caller decides whether that is allowed).
    Millis(u64),
}

/// Parses a duration: one or more `<number><unit>` pairs, units from largest to smallest and each
/// at most once (`"1h30m"`; spaces between and inside the pairs are allowed: `"1h 30m"`,
/// `"5 m"`), or `"none"`. The error says what is wrong, in the macro's message
/// style (lowercase, no trailing period, names in backticks).
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    if text == "none" {
        return Ok(Duration::Never);
    }
    if text.is_empty() {
        return Err(
            "empty duration, expected a duration such as `\"5m\"` or `\"1h30m\"`, or `\"none\"`"
                .to_owned(),
        );
    }
    let mut total: u64 = 0;
    // Index into `UNITS` that the next unit must come after.
    let mut next_unit = 0;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!(
                "expected a number followed by a unit, such as `\"5m\"` or `\"1h30m\"`, found `{text}`"
            ));
        }
        let (number, after) = rest.split_at(digits);
        if let Some(fraction) = after.strip_prefix('.') {
            return Err(fraction_error(text, number, fraction));
        }
        let after = after.trim_start();
        let unit_len = after.len()
            - after
                .trim_start_matches(|c: char| !c.is_ascii_digit() && !c.is_whitespace())
                .len();
        let (unit, after) = after.split_at(unit_len);
        let after = after.trim_start();
        if unit.is_empty() {
            return Err(format!(
                "missing unit after `{number}` in `{text}`, {EXPECTED_UNITS}"
            ));
        }
        let Some(index) = UNITS.iter().position(|&(name, _)| name == unit) else {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`, {EXPECTED_UNITS}"
            ));
        };
        if index < next_unit {
            return Err(format!(
                "`{text}` is out of order, units go from largest to smallest and each at most once, such as `\"1h30m\"`"
            ));
        }
        next_unit = index + 1;
        let millis = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[index].1))
            .and_then(|ms| total.checked_add(ms));
        total = millis.ok_or_else(|| format!("duration `{text}` is too long"))?;
        rest = after;
    }
    Ok(Duration::Millis(total))
}

/// The error for `<number>.<fraction><unit>`, suggesting the same length in whole units where
/// there is one (`"1.5h"`: write `"1h30m"`).
fn fraction_error(text: &str, number: &str, after_point: &str) -> String {
    let digits = after_point.len()
        - after_point
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    let (fraction, unit) = after_point.split_at(digits);
    let unit_ms = UNITS
        .iter()
        .find(|&&(name, _)| name == unit)
        .map(|&(_, ms)| ms);
    let suggestion = (|| {
        let scale = 10u64.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        let whole = number.parse::<u64>().ok()?.checked_mul(unit_ms?)?;
        let part = fraction.parse::<u64>().ok()?.checked_mul(unit_ms?)?;
        (part % scale == 0).then(|| whole.checked_add(part / scale))?
    })();
    let term = format!("{number}.{fraction}{unit}");
    match suggestion {
        Some(ms) if ms > 0 && term == text => format!(
            "fractions are not supported in `{text}`, write `\"{}\"` instead",
            whole_units(ms)
        ),
        Some(ms) if ms > 0 => format!(
            "fractions are not supported in `{text}`, write `{}` for `{term}`",
            whole_units(ms)
        ),
        _ => format!(
            "fractions are not supported in `{text}`, combine whole units instead, such as `\"1h30m\"`"
        ),
    }
}

/// `5_400_000` as `1h30m`.
fn whole_units(mut ms: u64) -> String {
    let mut text = String::new();
    for &(name, unit_ms) in UNITS {
        if ms >= unit_ms {
            text.push_str(&format!("{}{name}", ms / unit_ms));
            ms %= unit_ms;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit_and_combinations() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("7d", 604_800_000),
            ("1h30m", 5_400_000),
            ("1d2h3m4s5ms", 93_784_005),
            ("1m500ms", 60_500),
            ("0s", 0),
            ("007s", 7_000),
            ("5 m", 300_000),
            ("1h 30m", 5_400_000),
            (" 5m ", 300_000),
        ] {
            assert_eq!(parse(text), Ok(Duration::Millis(ms)), "{text}");
        }
        assert_eq!(parse("none"), Ok(Duration::Never));
    }

    #[test]
    fn rejects_malformed_durations_with_a_reason() {
        for (text, reason) in [
            ("", "empty duration"),
            ("300", "missing unit after `300`"),
            ("5x", "unknown unit `x`"),
            ("5M", "unknown unit `M`"),
            ("5min", "unknown unit `min`"),
            ("m", "expected a number followed by a unit"),
            ("-5m", "expected a number followed by a unit"),
            (
                "1.5h",
                "fractions are not supported in `1.5h`, write `\"1h30m\"` instead",
            ),
            ("0.25s", "write `\"250ms\"` instead"),
            ("1h0.5m", "write `30s` for `0.5m`"),
            (
                "1.0001s",
                "combine whole units instead, such as `\"1h30m\"`",
            ),
            ("1.5x", "combine whole units instead"),
            ("5 parsecs", "unknown unit `parsecs` in `5 parsecs`"),
            ("5 5m", "missing unit after `5`"),
            ("30m1h", "is out of order"),
            ("5m5m", "is out of order"),
            ("None", "expected a number followed by a unit"),
            ("99999999999999999999s", "too long"),
            ("300000000000000d", "too long"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(reason), "{text}: {err}");
        }
    }
}
