//! Wire formats of numbers and times: CPU as a canonical `DecimalSI` quantity, bytes as a canonical `BinarySI`
//! quantity, windows as Go `Duration.String()`, timestamps as RFC 3339 whole seconds (UTC).
//!
//! Everything appends to a caller-owned `Vec<u8>` without allocating (no `format!` on the hot path). This module
//! must not know about JSON objects, requests or storage; it only converts units at the edge.

use crate::time::TimestampMs;

/// Decimal SI suffixes by exponent of ten, from 10⁻⁹ (`n`) to 10¹⁸ (`E`), as apimachinery's `quantitySuffixer`.
const DECIMAL_SUFFIXES: [(i32, &[u8]); 10] = [
    (-9, b"n"),
    (-6, b"u"),
    (-3, b"m"),
    (0, b""),
    (3, b"k"),
    (6, b"M"),
    (9, b"G"),
    (12, b"T"),
    (15, b"P"),
    (18, b"E"),
];

/// Binary SI suffixes by power of 1024 (`Ki` = 1024¹ … `Ei` = 1024⁶).
const BINARY_SUFFIXES: [&[u8]; 7] = [b"", b"Ki", b"Mi", b"Gi", b"Ti", b"Pi", b"Ei"];

/// Largest value an apimachinery `int64Amount` holds; above it `uint64Quantity` drops one decimal digit.
const MAX_INT64: u64 = i64::MAX as u64;

/// Appends the decimal digits of `value`.
pub(crate) fn write_u64(buf: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `value % 10` is below 10, so the narrowing cannot lose bits.
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Appends the decimal digits of a value that may exceed `u64` (a mantissa scaled by 10 or 100).
fn write_u128(buf: &mut Vec<u8>, value: u128) {
    match u64::try_from(value) {
        Ok(small) => write_u64(buf, small),
        Err(_) => {
            // Only reachable for mantissas above u64::MAX / 100: split into two u64 halves of 19 digits.
            const SPLIT: u128 = 10_000_000_000_000_000_000;
            write_u128(buf, value / SPLIT);
            // The remainder is below 10^19 < u64::MAX.
            let low = (value % SPLIT) as u64;
            let mut digits = [b'0'; 19];
            let mut rest = low;
            for digit in digits.iter_mut().rev() {
                *digit = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            buf.extend_from_slice(&digits);
        }
    }
}

/// Appends a CPU rate in nanocores as apimachinery's canonical `DecimalSI` string of
/// `NewScaledQuantity(nanocores, -9)`: `123456789n`, `250m`, `5u`, `2`, `0`, `2k`.
///
/// Values above `i64::MAX` lose their last decimal digit, as metrics-server's `uint64Quantity` does.
pub(crate) fn write_cpu_nanocores(buf: &mut Vec<u8>, nanocores: u64) {
    if nanocores > MAX_INT64 {
        write_decimal(buf, nanocores / 10, -8);
    } else {
        write_decimal(buf, nanocores, -9);
    }
}

/// Appends a byte count as apimachinery's canonical `BinarySI` string of `NewQuantity(bytes, BinarySI)`:
/// `1578392Ki`, `6Gi`, `1500`; below 1024 apimachinery switches to `DecimalSI` (`512`, `1k` for 1000).
///
/// Values above `i64::MAX` lose their last decimal digit and are written in `DecimalSI` (apimachinery cannot
/// scale them to an exact integer).
pub(crate) fn write_bytes(buf: &mut Vec<u8>, bytes: u64) {
    if bytes < 1024 {
        write_decimal(buf, bytes, 0);
    } else if bytes > MAX_INT64 {
        write_decimal(buf, bytes / 10, 1);
    } else {
        let mut mantissa = bytes;
        let mut power = 0;
        while mantissa.is_multiple_of(1024) && power + 1 < BINARY_SUFFIXES.len() {
            mantissa /= 1024;
            power += 1;
        }
        write_u64(buf, mantissa);
        buf.extend_from_slice(BINARY_SUFFIXES[power]);
    }
}

/// Appends `mantissa × 10^exponent` in canonical decimal form: trailing zeros move into the exponent, which is then
/// lowered to a multiple of three and written as an SI suffix (`e<n>` beyond `E`).
fn write_decimal(buf: &mut Vec<u8>, mantissa: u64, exponent: i32) {
    if mantissa == 0 {
        buf.push(b'0');
        return;
    }
    let (mut mantissa, mut exponent) = (mantissa, exponent);
    while mantissa.is_multiple_of(10) {
        mantissa /= 10;
        exponent += 1;
    }
    // Scaling by 10 or 100 can exceed u64 only for mantissas above u64::MAX / 100.
    let mut mantissa = u128::from(mantissa);
    match exponent.rem_euclid(3) {
        1 => {
            mantissa *= 10;
            exponent -= 1;
        }
        2 => {
            mantissa *= 100;
            exponent -= 2;
        }
        _ => {}
    }
    write_u128(buf, mantissa);
    match DECIMAL_SUFFIXES.iter().find(|(e, _)| *e == exponent) {
        Some((_, suffix)) => buf.extend_from_slice(suffix),
        None => {
            buf.push(b'e');
            if exponent < 0 {
                buf.push(b'-');
            }
            write_u64(buf, u64::from(exponent.unsigned_abs()));
        }
    }
}

/// Appends a duration given in milliseconds as Go's `time.Duration.String()`: `15.012s`, `1m0.5s`, `1h0m0s`,
/// `500ms`, `0s`.
pub(crate) fn write_duration_ms(buf: &mut Vec<u8>, duration_ms: i64) {
    if duration_ms == 0 {
        buf.extend_from_slice(b"0s");
        return;
    }
    if duration_ms < 0 {
        buf.push(b'-');
    }
    let ms = duration_ms.unsigned_abs();
    if ms < 1000 {
        write_u64(buf, ms);
        buf.extend_from_slice(b"ms");
        return;
    }
    let total_seconds = ms / 1000;
    let hours = total_seconds / 3600;
    let minutes = (total_seconds / 60) % 60;
    let seconds = total_seconds % 60;
    if hours > 0 {
        write_u64(buf, hours);
        buf.push(b'h');
    }
    if total_seconds >= 60 {
        write_u64(buf, minutes);
        buf.push(b'm');
    }
    write_u64(buf, seconds);
    let fraction = ms % 1000;
    if fraction != 0 {
        buf.push(b'.');
        let digits = [
            (fraction / 100) as u8,
            (fraction / 10 % 10) as u8,
            (fraction % 10) as u8,
        ];
        let len = if digits[2] != 0 {
            3
        } else if digits[1] != 0 {
            2
        } else {
            1
        };
        buf.extend(digits[..len].iter().map(|d| b'0' + d));
    }
    buf.push(b's');
}

/// Length of an RFC 3339 timestamp with whole seconds: `2026-01-01T10:00:00Z`.
pub(crate) const RFC3339_SECONDS_LEN: usize = 20;

/// Formats a millisecond Unix timestamp as RFC 3339 in UTC with whole seconds (the fraction is dropped, as
/// `metav1.Time` does in JSON): `2026-01-01T10:00:00Z`. Years outside 0..=9999 are clamped to that range.
pub(crate) fn rfc3339_seconds(timestamp_ms: TimestampMs) -> [u8; RFC3339_SECONDS_LEN] {
    let seconds = timestamp_ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (year, month, day) = match year {
        y if y < 0 => (0, 1, 1),
        y if y > 9999 => (9999, 12, 31),
        y => (y, month, day),
    };
    let mut out = *b"0000-00-00T00:00:00Z";
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], month);
    put_digits(&mut out[8..10], day);
    put_digits(&mut out[11..13], second_of_day / 3600);
    put_digits(&mut out[14..16], second_of_day / 60 % 60);
    put_digits(&mut out[17..19], second_of_day % 60);
    out
}

/// Writes `value` right-aligned into `slot` as zero-padded decimal digits (`value` fits the slot).
fn put_digits(slot: &mut [u8], mut value: i64) {
    for byte in slot.iter_mut().rev() {
        // `rem_euclid(10)` is in 0..10.
        *byte = b'0' + value.rem_euclid(10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on unexpected values.
mod tests {
    use super::*;

    fn cpu(nanocores: u64) -> String {
        let mut buf = Vec::new();
        write_cpu_nanocores(&mut buf, nanocores);
        String::from_utf8(buf).unwrap()
    }

    fn bytes(value: u64) -> String {
        let mut buf = Vec::new();
        write_bytes(&mut buf, value);
        String::from_utf8(buf).unwrap()
    }

    fn duration(ms: i64) -> String {
        let mut buf = Vec::new();
        write_duration_ms(&mut buf, ms);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn cpu_is_formatted_as_apimachinery_canonical_decimal_si() {
        let cases: &[(&str, u64, &str)] = &[
            ("zero", 0, "0"),
            ("odd nanocores stay nanocores", 123_456_789, "123456789n"),
            ("whole millicores", 250_000_000, "250m"),
            ("whole microcores", 5_000, "5u"),
            ("ten nanocores stay nanocores", 10, "10n"),
            ("whole cores", 2_000_000_000, "2"),
            (
                "fifteen hundred cores keep the mantissa",
                1_500_000_000_000,
                "1500",
            ),
            ("thousands of cores use k", 2_000_000_000_000, "2k"),
            ("one and a half cores in millicores", 1_500_000_000, "1500m"),
            ("mixed digits", 1_234_567_890, "1234567890n"),
            (
                "above int64 max loses one digit",
                u64::MAX,
                "18446744073709551610n",
            ),
            (
                "above int64 max with zeros",
                10_000_000_000_000_000_000,
                "10G",
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(cpu(*input), *want, "{name}");
        }
    }

    #[test]
    fn digits_beyond_u64_are_written_in_full() {
        let cases: &[(&str, u128, &str)] = &[
            ("zero", 0, "0"),
            ("u64 max", u128::from(u64::MAX), "18446744073709551615"),
            (
                "u64 max times 100",
                u128::from(u64::MAX) * 100,
                "1844674407370955161500",
            ),
            (
                "low half with leading zeros",
                10_000_000_000_000_000_007,
                "10000000000000000007",
            ),
        ];
        for (name, input, want) in cases {
            let mut buf = Vec::new();
            write_u128(&mut buf, *input);
            assert_eq!(String::from_utf8(buf).unwrap(), *want, "{name}");
        }
    }

    #[test]
    fn bytes_are_formatted_as_apimachinery_canonical_binary_si() {
        let cases: &[(&str, u64, &str)] = &[
            ("zero", 0, "0"),
            ("below 1024 is plain decimal", 512, "512"),
            ("below 1024 uses decimal si like apimachinery", 1000, "1k"),
            ("exact kibibytes", 1_578_392 * 1024, "1578392Ki"),
            ("exact gibibytes", 6 * 1024 * 1024 * 1024, "6Gi"),
            ("not divisible by 1024", 1500, "1500"),
            (
                "1536 is not a whole kibibyte multiple of 1024",
                1536,
                "1536",
            ),
            ("1024", 1024, "1Ki"),
            ("exact exbibytes", 1 << 60, "1Ei"),
            ("8 EiB is above int64 max", 1 << 63, "9223372036854775800"),
        ];
        for (name, input, want) in cases {
            assert_eq!(bytes(*input), *want, "{name}");
        }
    }

    #[test]
    fn durations_are_formatted_as_go_duration_strings() {
        let cases: &[(&str, i64, &str)] = &[
            ("zero", 0, "0s"),
            ("milliseconds", 500, "500ms"),
            ("seconds with milliseconds", 15_012, "15.012s"),
            ("trailing zeros are trimmed", 20_050, "20.05s"),
            ("whole seconds", 15_000, "15s"),
            ("minute and fraction", 60_500, "1m0.5s"),
            ("whole minute", 60_000, "1m0s"),
            ("hour", 3_600_000, "1h0m0s"),
            ("hour minute second", 3_723_100, "1h2m3.1s"),
            ("negative", -1_500, "-1.5s"),
        ];
        for (name, input, want) in cases {
            assert_eq!(duration(*input), *want, "{name}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_whole_seconds_matching_jiff() {
        let cases: &[(&str, i64)] = &[
            ("epoch", 0),
            ("fraction is dropped", 1_767_261_600_999),
            ("new year 2026", 1_767_261_600_000),
            ("leap day", 1_709_164_800_000 + 12_345_000),
            ("end of century", 4_102_444_799_000),
            ("before epoch floors", -1),
        ];
        for (name, ms) in cases {
            let got = String::from_utf8(rfc3339_seconds(*ms).to_vec()).unwrap();
            let want = jiff::Timestamp::from_second(ms.div_euclid(1000))
                .unwrap()
                .to_string();
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(&rfc3339_seconds(1_767_261_600_000), b"2026-01-01T10:00:00Z");
    }
}
