//! Duration strings of `gateway.toml`: a whole number and a unit, `500ms`, `30s`, `5m`, `2h`, `30d`.

use std::time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like \"30s\""))?;
    let millis = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1_000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        "d" => value.checked_mul(86_400_000),
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit (use ms, s, m, h or d)"
            ))
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Formats a duration back into the shortest exact unit, for `wxgate check`.
pub fn display(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_unit() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("30d", 2_592_000_000),
            ("0s", 0),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn refuses_missing_or_unknown_units_and_signs() {
        for text in [
            "30",
            "",
            "s",
            "-1s",
            "1.5s",
            "3 s",
            "10w",
            "1S",
            "99999999999999999999d",
        ] {
            assert!(parse(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(display(Duration::from_secs(7200)), "2h");
        assert_eq!(display(Duration::from_millis(1500)), "1500ms");
        assert_eq!(display(Duration::from_secs(90)), "90s");
    }
}
