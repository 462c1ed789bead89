//! Parsers shared by the e2e test files for what the server and kubectl print: Kubernetes quantities (CPU,
//! bytes) and Go durations. Test support only: it must not talk to any process.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// A CPU quantity in nanocores: `123n`, `45u`, `250m`, `2`, `1.5`.
pub fn cpu_nanocores(q: &str) -> f64 {
    let (number, scale) = match q.as_bytes().last() {
        Some(b'n') => (&q[..q.len() - 1], 1.0),
        Some(b'u') => (&q[..q.len() - 1], 1e3),
        Some(b'm') => (&q[..q.len() - 1], 1e6),
        _ => (q, 1e9),
    };
    number
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("cpu quantity {q:?}"))
        * scale
}

/// A memory quantity in bytes: `128Mi`, `1234Ki`, `2Gi`, `5000000`, `5M`, `5k`.
pub fn bytes(q: &str) -> u64 {
    const SUFFIXES: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    number
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("memory quantity {q:?}"))
        * scale
}

/// A Go duration (`10s`, `10.5s`, `1m0.5s`, `500ms`, `1h2m3s`) in seconds.
pub fn go_duration(d: &str) -> f64 {
    const UNITS: [(&str, f64); 7] = [
        ("h", 3600.0),
        ("ms", 1e-3),
        ("m", 60.0),
        ("s", 1.0),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ns", 1e-9),
    ];
    assert!(!d.is_empty(), "empty duration");
    let mut rest = d;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or_else(|| panic!("duration {d:?} has a number without unit"));
        let value: f64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("duration {d:?}"));
        rest = &rest[digits..];
        let (unit, scale) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .unwrap_or_else(|| panic!("duration {d:?} has an unknown unit"));
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    total
}

/// Millicores of a `kubectl top` CPU cell (`251m`, `2`).
pub fn millicores(cell: &str) -> Option<u64> {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => cell.parse::<u64>().ok().map(|c| c * 1000),
    }
}

/// MiB of a `kubectl top` memory cell (`128Mi`).
pub fn mebibytes(cell: &str) -> Option<u64> {
    cell.strip_suffix("Mi")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_and_duration_parsers_read_what_the_server_writes() {
        assert_eq!(cpu_nanocores("250m"), 250e6);
        assert_eq!(cpu_nanocores("123456789n"), 123_456_789.0);
        assert_eq!(cpu_nanocores("12u"), 12_000.0);
        assert_eq!(cpu_nanocores("2"), 2e9);
        assert_eq!(bytes("128Mi"), 128 << 20);
        assert_eq!(bytes("1234567"), 1_234_567);
        assert_eq!(bytes("3Gi"), 3 << 30);
        assert_eq!(bytes("4Ki"), 4096);
        assert_eq!(go_duration("10s"), 10.0);
        assert_eq!(go_duration("10.5s"), 10.5);
        assert_eq!(go_duration("1m0.5s"), 60.5);
        assert_eq!(go_duration("500ms"), 0.5);
    }
}
