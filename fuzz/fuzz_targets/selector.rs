//! libFuzzer target for the label and field selector parsers and matchers (`src/cluster/selector.rs`,
//! `src/api/selector.rs`).
//!
//! Compiles `src/api/selector.rs` straight from the main crate (`cluster::{Labels, LabelSelector}` come from
//! `shim/`, which compiles `src/cluster/{labels,selector}.rs`). The first
//! input byte picks a mode:
//! - raw label / raw field selector (the rest of the input up to a `0xFF` byte is the selector, what follows
//!   feeds the label maps and object names): no panic; parsing and matching are deterministic; padding, and
//!   spaces around `,`, `(` and `)`, do not change a label selector; a parsed selector behaves as the conjunction
//!   of its top-level terms; a fixed namespace excludes every other namespace;
//! - structured label / field selector: requirements are generated, then written in canonical form, in a
//!   reordered and re-spaced form with duplicated set values, and with synonyms (`==` for `=`, `in (v)` for `=v`,
//!   `notin (v)` for `!=v`). Parsing must succeed exactly when an independent model of apimachinery's validation
//!   says so, the canonical and reordered forms give equal selectors (when keys are distinct), and all forms match
//!   random label maps exactly as the model does.
//!
//! Must not hold selector logic beyond that model.

#![no_main]

use libfuzzer_sys::arbitrary::{Result as ArbitraryResult, Unstructured};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "shim/cluster.rs"]
mod cluster;

#[allow(dead_code)]
#[path = "../../src/api/selector.rs"]
mod selector;

use cluster::Labels;
use selector::{FieldSelector, LabelSelector};

const KEYS: &[&str] = &[
    "app",
    "tier",
    "k",
    "legacy",
    "environment",
    "example.com/x",
    "a.b-c_d",
    "in",
    "notin",
    "K8S",
    "x/y",
    "a",
    "0",
    "app.kubernetes.io/name",
    "-a",
    "a-",
    "a/",
    "/a",
    "a/b/c",
    "Example.com/x",
    "_a",
    "a..b",
    "a.-b/c",
];
const VALUES: &[&str] = &[
    "web", "db", "x", "y", "prod", "1", "5", "-3", "007", "", "in", "notin", "A_b.c-d", "-x", "x-",
];
const KEY_CHARS: &[u8] = b"abcxyzABC0129._-/";
const VALUE_CHARS: &[u8] = b"abcxyzABC0129._-/";
const SPACES: &[&str] = &["", "", " ", "  ", "\t", "\n", "\r", " \t"];
const NAMES: &[&str] = &[
    "web-1",
    "node-a",
    "default",
    "kube-system",
    "",
    "a,b",
    "a=b",
    "a!b",
    "a\\b",
    "ü",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Greater,
    Less,
}

#[derive(Debug, Clone)]
struct Req {
    key: String,
    op: Op,
    /// The value set, sorted and deduplicated (one element for binary operators, none for (not-)exists).
    values: Vec<String>,
}

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> ArbitraryResult<&'a str> {
    Ok(from[u.choose_index(from.len())?])
}

/// A vocabulary word, or a string over `chars` of length `min..=max`.
fn text(
    u: &mut Unstructured<'_>,
    vocab: &[&str],
    chars: &[u8],
    min: usize,
) -> ArbitraryResult<String> {
    if u.ratio(2, 3)? {
        return Ok(pick(u, vocab)?.to_owned());
    }
    let len = if u.ratio(1, 8)? {
        u.int_in_range(60..=70)?
    } else {
        u.int_in_range(min..=12)?
    };
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        out.push(char::from(chars[u.choose_index(chars.len())?]));
    }
    if u.ratio(1, 16)? {
        // A prefix just over the 253-byte subdomain limit.
        out = format!("{}.com/{out}", "a".repeat(250));
    }
    Ok(out)
}

// --- the model: apimachinery's rules, written from its regexes, independently of src/cluster/selector.rs ---

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn model_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter()
            .all(|&c| is_alnum(c) || c == b'-' || c == b'_' || c == b'.')
}

/// `IsDNS1123Subdomain`: at most 253 bytes of dot-separated `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn model_subdomain(s: &str) -> bool {
    let lower = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && lower(b[0])
                && lower(b[b.len() - 1])
                && b.iter().all(|&c| lower(c) || c == b'-')
        })
}

fn model_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => return false,
    };
    prefix.is_none_or(model_subdomain) && name.len() <= 63 && model_name(name)
}

fn model_value(value: &str) -> bool {
    value.is_empty() || (value.len() <= 63 && model_name(value))
}

fn model_valid(r: &Req) -> bool {
    let bound_ok = !matches!(r.op, Op::Greater | Op::Less) || r.values[0].parse::<i64>().is_ok();
    model_key(&r.key) && r.values.iter().all(|v| model_value(v)) && bound_ok
}

fn model_matches(reqs: &[Req], labels: &Labels) -> bool {
    reqs.iter().all(|r| {
        let got = labels.get(&r.key);
        let in_set = got.is_some_and(|v| r.values.iter().any(|x| x == v));
        let int = || got.and_then(|v| v.parse::<i64>().ok());
        let bound = || r.values[0].parse::<i64>().ok();
        match r.op {
            Op::Exists => got.is_some(),
            Op::DoesNotExist => got.is_none(),
            Op::Equals | Op::DoubleEquals | Op::In => in_set,
            Op::NotEquals | Op::NotIn => !in_set,
            Op::Greater => matches!((int(), bound()), (Some(v), Some(b)) if v > b),
            Op::Less => matches!((int(), bound()), (Some(v), Some(b)) if v < b),
        }
    })
}

// --- writing requirements as text ---

/// How to write a requirement: canonical, reordered/re-spaced with duplicate values, or with synonyms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Canonical,
    Messy,
    Synonyms,
}

fn space(u: &mut Unstructured<'_>, style: Style, required: bool) -> ArbitraryResult<&'static str> {
    Ok(match (style, required) {
        (Style::Canonical, true) => " ",
        (Style::Canonical, false) => "",
        (_, true) => pick(u, &SPACES[2..])?,
        (_, false) => pick(u, SPACES)?,
    })
}

fn write_set(
    u: &mut Unstructured<'_>,
    style: Style,
    values: &[String],
    out: &mut String,
) -> ArbitraryResult<()> {
    let mut values: Vec<&str> = values.iter().map(String::as_str).collect();
    if style != Style::Canonical {
        // Duplicates and any order are allowed; the empty value may be anywhere but only once ("(,,)" is an error).
        for i in 0..values.len() {
            if !values[i].is_empty() && u.ratio(1, 4)? {
                values.push(values[i]);
            }
        }
        for i in (1..values.len()).rev() {
            values.swap(i, u.int_in_range(0..=i)?);
        }
    }
    out.push('(');
    if values == [""] {
        out.push_str(space(u, style, false)?);
    }
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(space(u, style, false)?);
            out.push(',');
        }
        out.push_str(space(u, style, false)?);
        out.push_str(v);
    }
    out.push_str(space(u, style, false)?);
    out.push(')');
    Ok(())
}

fn write_req(
    u: &mut Unstructured<'_>,
    style: Style,
    r: &Req,
    out: &mut String,
) -> ArbitraryResult<()> {
    let binary = |out: &mut String, u: &mut Unstructured<'_>, op: &str| -> ArbitraryResult<()> {
        out.push_str(&r.key);
        out.push_str(space(u, style, false)?);
        out.push_str(op);
        out.push_str(space(u, style, false)?);
        out.push_str(&r.values[0]);
        Ok(())
    };
    let set = |out: &mut String,
               u: &mut Unstructured<'_>,
               op: &str,
               values: &[String]|
     -> ArbitraryResult<()> {
        out.push_str(&r.key);
        out.push_str(space(u, style, true)?);
        out.push_str(op);
        out.push_str(space(u, style, false)?);
        write_set(u, style, values, out)
    };
    let synonym = style == Style::Synonyms && u.arbitrary()?;
    match r.op {
        Op::Exists => out.push_str(&r.key),
        Op::DoesNotExist => {
            out.push('!');
            out.push_str(space(u, style, false)?);
            out.push_str(&r.key);
        }
        Op::Equals | Op::DoubleEquals if synonym => set(out, u, "in", &r.values)?,
        Op::NotEquals if synonym => set(out, u, "notin", &r.values)?,
        Op::Equals if synonym => binary(out, u, "==")?,
        Op::Equals => binary(out, u, "=")?,
        Op::DoubleEquals => binary(out, u, "==")?,
        Op::NotEquals => binary(out, u, "!=")?,
        Op::Greater => binary(out, u, ">")?,
        Op::Less => binary(out, u, "<")?,
        Op::In => set(out, u, "in", &r.values)?,
        Op::NotIn => set(out, u, "notin", &r.values)?,
    }
    Ok(())
}

fn write_selector(u: &mut Unstructured<'_>, style: Style, reqs: &[Req]) -> ArbitraryResult<String> {
    let mut order: Vec<&Req> = reqs.iter().collect();
    if style == Style::Canonical {
        order.sort_by(|a, b| a.key.cmp(&b.key));
    } else {
        for i in (1..order.len()).rev() {
            order.swap(i, u.int_in_range(0..=i)?);
        }
    }
    let mut out = String::from(space(u, style, false)?);
    for (i, r) in order.iter().enumerate() {
        if i > 0 {
            out.push_str(space(u, style, false)?);
            out.push(',');
            out.push_str(space(u, style, false)?);
        }
        write_req(u, style, r, &mut out)?;
    }
    out.push_str(space(u, style, false)?);
    Ok(out)
}

fn requirements(u: &mut Unstructured<'_>) -> ArbitraryResult<Vec<Req>> {
    let mut reqs = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let key = text(u, KEYS, KEY_CHARS, 1)?;
        let op = *u.choose(&[
            Op::Exists,
            Op::DoesNotExist,
            Op::Equals,
            Op::DoubleEquals,
            Op::NotEquals,
            Op::In,
            Op::NotIn,
            Op::Greater,
            Op::Less,
        ])?;
        let mut values = match op {
            Op::Exists | Op::DoesNotExist => Vec::new(),
            Op::In | Op::NotIn => {
                let mut values = vec![text(u, VALUES, VALUE_CHARS, 0)?];
                for _ in 0..u.int_in_range(0..=3)? {
                    values.push(text(u, VALUES, VALUE_CHARS, 0)?);
                }
                values
            }
            _ => vec![text(u, VALUES, VALUE_CHARS, 0)?],
        };
        values.sort();
        values.dedup();
        reqs.push(Req { key, op, values });
    }
    Ok(reqs)
}

/// Label maps over the requirements' keys and values, numbers, and raw strings.
fn label_maps(u: &mut Unstructured<'_>, reqs: &[Req]) -> Vec<Labels> {
    let mut keys: Vec<String> = reqs.iter().map(|r| r.key.clone()).collect();
    keys.extend(KEYS.iter().take(4).map(|k| (*k).to_owned()));
    let mut values: Vec<String> = reqs.iter().flat_map(|r| r.values.iter().cloned()).collect();
    values.extend(
        [
            "",
            "web",
            "0",
            "1",
            "2",
            "6",
            "-4",
            "+7",
            "9223372036854775807",
            "99999999999999999999",
        ]
        .map(String::from),
    );
    let mut maps = vec![Labels::new()];
    for _ in 0..8 {
        let mut map = std::collections::BTreeMap::new();
        let Ok(n) = u.int_in_range(0..=4) else { break };
        for _ in 0..n {
            let (Ok(k), Ok(v)) = (u.choose(&keys), u.choose(&values)) else {
                break;
            };
            let v = if u.ratio(1, 10).unwrap_or(false) {
                u.arbitrary::<&str>().unwrap_or("").to_owned()
            } else {
                v.clone()
            };
            map.insert(k.clone(), v);
        }
        maps.push(Labels::from(map));
    }
    maps
}

fn structured_label(u: &mut Unstructured<'_>) -> ArbitraryResult<()> {
    let reqs = requirements(u)?;
    let valid = reqs.iter().all(model_valid);
    let canonical = write_selector(u, Style::Canonical, &reqs)?;
    let messy = write_selector(u, Style::Messy, &reqs)?;
    let synonyms = write_selector(u, Style::Synonyms, &reqs)?;
    let parsed = LabelSelector::parse(&canonical);
    assert_eq!(
        parsed.is_ok(),
        valid,
        "{canonical:?} parsed as {parsed:?}, model says valid={valid} for {reqs:?}"
    );
    let messy_parsed = LabelSelector::parse(&messy);
    assert_eq!(
        messy_parsed.is_ok(),
        valid,
        "{messy:?} parsed as {messy_parsed:?}, canonical {canonical:?}"
    );
    let synonyms_parsed = LabelSelector::parse(&synonyms);
    assert_eq!(
        synonyms_parsed.is_ok(),
        valid,
        "{synonyms:?} parsed as {synonyms_parsed:?}"
    );
    let (Ok(parsed), Ok(messy_parsed), Ok(synonyms_parsed)) =
        (parsed, messy_parsed, synonyms_parsed)
    else {
        return Ok(());
    };
    assert_eq!(parsed.is_empty(), reqs.is_empty());
    let mut keys: Vec<&str> = reqs.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    if keys.len() == reqs.len() {
        assert_eq!(parsed, messy_parsed, "{canonical:?} and {messy:?} differ");
    }
    for labels in label_maps(u, &reqs) {
        let want = model_matches(&reqs, &labels);
        assert_eq!(parsed.matches(&labels), want, "{canonical:?} on {labels:?}");
        assert_eq!(
            messy_parsed.matches(&labels),
            want,
            "{messy:?} on {labels:?}"
        );
        assert_eq!(
            synonyms_parsed.matches(&labels),
            want,
            "{synonyms:?} on {labels:?}"
        );
    }
    Ok(())
}

/// Top-level requirements of a label selector: split at commas outside parentheses.
fn top_level_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn raw_label(selector: &str, u: &mut Unstructured<'_>) {
    let parsed = LabelSelector::parse(selector);
    assert_eq!(
        LabelSelector::parse(selector),
        parsed,
        "parsing is deterministic"
    );
    if let Err(e) = &parsed {
        assert!(!e.0.is_empty(), "errors have a message");
    }
    let padded = format!(" \t{selector}\n ");
    assert_eq!(
        LabelSelector::parse(&padded),
        parsed,
        "padding changes nothing: {selector:?}"
    );
    let spaced = selector
        .replace(',', " , ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    assert_eq!(
        LabelSelector::parse(&spaced),
        parsed,
        "spaces around , ( ) change nothing: {selector:?}"
    );
    let Ok(parsed) = parsed else { return };
    let terms: Vec<LabelSelector> = top_level_terms(selector)
        .into_iter()
        .map(|t| {
            LabelSelector::parse(t)
                .unwrap_or_else(|e| panic!("term {t:?} of valid {selector:?}: {e}"))
        })
        .collect();
    for labels in label_maps(u, &[]) {
        let got = parsed.matches(&labels);
        assert_eq!(parsed.matches(&labels), got, "matching is deterministic");
        if parsed.is_empty() {
            assert!(got, "the empty selector matches everything");
        }
        let conjunction = terms.iter().all(|t| t.matches(&labels));
        assert_eq!(
            got, conjunction,
            "{selector:?} is the conjunction of its terms on {labels:?}"
        );
    }
}

/// Field selector terms: split at commas not escaped by a backslash.
fn field_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut escaped, mut start) = (false, 0);
    for (i, c) in selector.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn objects(u: &mut Unstructured<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..6 {
        let (Ok(name), Ok(namespace)) = (pick(u, NAMES), pick(u, NAMES)) else {
            break;
        };
        let name = if u.ratio(1, 5).unwrap_or(false) {
            u.arbitrary::<&str>().unwrap_or("")
        } else {
            name
        };
        out.push((name.to_owned(), namespace.to_owned()));
    }
    out
}

fn raw_field(selector: &str, u: &mut Unstructured<'_>) {
    let parsed = FieldSelector::parse(selector);
    assert_eq!(
        FieldSelector::parse(selector),
        parsed,
        "parsing is deterministic"
    );
    let Ok(parsed) = parsed else { return };
    let terms: Vec<FieldSelector> = field_terms(selector)
        .into_iter()
        .map(|t| {
            FieldSelector::parse(t)
                .unwrap_or_else(|e| panic!("term {t:?} of valid {selector:?}: {e}"))
        })
        .collect();
    for (name, namespace) in objects(u) {
        let got = parsed.matches(&name, &namespace);
        assert_eq!(
            got,
            terms.iter().all(|t| t.matches(&name, &namespace)),
            "{selector:?} on {name:?}/{namespace:?}"
        );
        if let Some(required) = parsed.required_namespace() {
            assert!(
                !parsed.matches(&name, &format!("{required}x")),
                "{selector:?} fixes namespace {required:?}"
            );
        }
    }
}

/// apimachinery's `EscapeValue`: `\`, `,` and `=` get a backslash.
fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn structured_field(u: &mut Unstructured<'_>) -> ArbitraryResult<()> {
    const FIELDS: &[&str] = &[
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "metadata.name ",
        "status.phase",
    ];
    let mut terms = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let field = pick(u, FIELDS)?;
        let op = pick(u, &["=", "==", "!="])?;
        let value = if u.ratio(1, 2)? {
            pick(u, NAMES)?.to_owned()
        } else {
            u.arbitrary::<&str>()?.to_owned()
        };
        terms.push((field, op, value));
    }
    let text: Vec<String> = terms
        .iter()
        .map(|(f, op, v)| format!("{f}{op}{}", escape_field_value(v)))
        .collect();
    let selector = text.join(",");
    let valid = terms
        .iter()
        .all(|(f, _, _)| matches!(*f, "metadata.name" | "metadata.namespace"));
    let parsed = FieldSelector::parse(&selector);
    assert_eq!(parsed.is_ok(), valid, "{selector:?} parsed as {parsed:?}");
    let Ok(parsed) = parsed else { return Ok(()) };
    let mut candidates = objects(u);
    candidates.extend(terms.iter().map(|(_, _, v)| (v.clone(), v.clone())));
    for (name, namespace) in candidates {
        let want = terms.iter().all(|(f, op, v)| {
            let actual = if *f == "metadata.name" {
                &name
            } else {
                &namespace
            };
            (actual == v) == (*op != "!=")
        });
        assert_eq!(
            parsed.matches(&name, &namespace),
            want,
            "{selector:?} on {name:?}/{namespace:?}"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 | 1 => {
            let end = rest.iter().position(|&b| b == 0xFF).unwrap_or(rest.len());
            let Ok(selector) = std::str::from_utf8(&rest[..end]) else {
                return;
            };
            let mut u = Unstructured::new(rest.get(end + 1..).unwrap_or_default());
            if mode % 4 == 0 {
                raw_label(selector, &mut u)
            } else {
                raw_field(selector, &mut u)
            }
        }
        2 => {
            let _ = structured_label(&mut Unstructured::new(rest));
        }
        _ => {
            let _ = structured_field(&mut Unstructured::new(rest));
        }
    }
});
