//! JSON writing primitives: escaped strings, label maps, and the `Usage` object, appended to a caller-owned
//! `Vec<u8>`.
//!
//! This module must not build intermediate JSON trees or allocate per value; it knows nothing of routing.

use super::quantity;
use crate::api::Usage;
use crate::cluster::Labels;

/// Appends `value` as a JSON string (quotes included), escaping `"`, `\` and control characters.
pub(crate) fn write_str(buf: &mut Vec<u8>, value: &str) {
    buf.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..at]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(byte >> 4)]);
            buf.push(HEX[usize::from(byte & 0xf)]);
        } else {
            buf.extend_from_slice(escape);
        }
        start = at + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Appends `"key":` for a key that needs no escaping (a literal chosen by this crate).
pub(crate) fn write_key(buf: &mut Vec<u8>, key: &str) {
    buf.push(b'"');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
}

/// Appends a label map as a JSON object with keys in sorted order (as Go marshals maps).
pub(crate) fn write_labels(buf: &mut Vec<u8>, labels: &Labels) {
    buf.push(b'{');
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_str(buf, key);
        buf.push(b':');
        write_str(buf, value);
    }
    buf.push(b'}');
}

/// Appends a `ResourceList`: `{"cpu":"…","memory":"…"}` plus `"swap"` when present (keys in sorted order).
pub(crate) fn write_usage(buf: &mut Vec<u8>, usage: &Usage) {
    buf.extend_from_slice(b"{\"cpu\":\"");
    quantity::write_cpu_nanocores(buf, usage.cpu_nanocores);
    buf.extend_from_slice(b"\",\"memory\":\"");
    quantity::write_bytes(buf, usage.memory_bytes);
    if let Some(swap) = usage.swap_bytes {
        buf.extend_from_slice(b"\",\"swap\":\"");
        quantity::write_bytes(buf, swap);
    }
    buf.extend_from_slice(b"\"}");
}

/// Appends an `ObjectMeta` with the fields metrics-server fills: name, namespace (pods), creationTimestamp and
/// labels (omitted when empty). No resourceVersion, uid or selfLink.
pub(crate) fn write_metadata(
    buf: &mut Vec<u8>,
    name: &str,
    namespace: Option<&str>,
    created: &[u8; quantity::RFC3339_SECONDS_LEN],
    labels: &Labels,
) {
    buf.extend_from_slice(b"{\"name\":");
    write_str(buf, name);
    if let Some(namespace) = namespace {
        buf.extend_from_slice(b",\"namespace\":");
        write_str(buf, namespace);
    }
    buf.extend_from_slice(b",\"creationTimestamp\":\"");
    buf.extend_from_slice(created);
    buf.push(b'"');
    if !labels.is_empty() {
        buf.extend_from_slice(b",\"labels\":");
        write_labels(buf, labels);
    }
    buf.push(b'}');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on unexpected values.
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_like_json_requires() {
        let cases: &[(&str, &str, &str)] = &[
            ("plain", "node-a", "\"node-a\""),
            ("quote and backslash", "a\"b\\c", "\"a\\\"b\\\\c\""),
            ("newline and tab", "a\nb\tc", "\"a\\nb\\tc\""),
            ("other control", "a\u{1}b", "\"a\\u0001b\""),
            ("unicode passes through", "größe", "\"größe\""),
            ("empty", "", "\"\""),
        ];
        for (name, input, want) in cases {
            let mut buf = Vec::new();
            write_str(&mut buf, input);
            assert_eq!(String::from_utf8(buf).unwrap(), *want, "{name}");
            let mut buf = Vec::new();
            write_str(&mut buf, input);
            let back: String = serde_json::from_slice(&buf).unwrap();
            assert_eq!(back, *input, "{name} round-trips");
        }
    }

    #[test]
    fn usage_lists_swap_only_when_present() {
        let mut buf = Vec::new();
        write_usage(
            &mut buf,
            &Usage {
                cpu_nanocores: 5_000_000,
                memory_bytes: 10 << 20,
                swap_bytes: None,
            },
        );
        assert_eq!(buf, br#"{"cpu":"5m","memory":"10Mi"}"#);
        buf.clear();
        write_usage(
            &mut buf,
            &Usage {
                cpu_nanocores: 0,
                memory_bytes: 0,
                swap_bytes: Some(2048),
            },
        );
        assert_eq!(buf, br#"{"cpu":"0","memory":"0","swap":"2Ki"}"#);
    }
}
