//! Field selectors metrics-server understands (`metadata.name`, `metadata.namespace`), and the label selector
//! re-exported from `cluster` (where the index uses it) so that handlers import both from one place.
//!
//! Parsing happens once per request; [`FieldSelector::matches`] is then cheap and allocation-free. This module
//! must not know about HTTP, Status bodies or the cluster view.

pub use crate::cluster::selector::{LabelSelector, SelectorError};

/// A parsed field selector: every term must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// The object fields a field selector can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `metadata.name`.
    Name,
    /// `metadata.namespace` (empty for nodes).
    Namespace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: Field,
    equal: bool,
    value: String,
}

// === impl FieldSelector ===

impl FieldSelector {
    /// Parses a field selector (`metadata.name=x,metadata.namespace!=y`; `\` escapes `,`, `=` and `\` in
    /// values) and checks that only `metadata.name` and `metadata.namespace` are named.
    ///
    /// # Errors
    /// [`SelectorError`] for a term without operator, a bad escape, or an unknown field (apiserver's message:
    /// `"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"`).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        // Like apimachinery: parse every term first, then convert the field names.
        let mut parsed = Vec::new();
        for term in split_unescaped(selector, b',') {
            if term.is_empty() {
                continue;
            }
            let (field, equal, raw_value) = split_term(term).ok_or_else(|| {
                error(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                ))
            })?;
            parsed.push((field, equal, unescape(raw_value)?));
        }
        let terms = parsed
            .into_iter()
            .map(|(field, equal, value)| {
                let field = match field {
                    "metadata.name" => Field::Name,
                    "metadata.namespace" => Field::Namespace,
                    other => {
                        return Err(error(format!(
                            "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                            go_quote(other)
                        )));
                    }
                };
                Ok(FieldTerm { field, equal, value })
            })
            .collect::<Result<_, _>>()?;
        Ok(FieldSelector { terms })
    }

    /// The namespace every match must be in, when a `metadata.namespace=` term fixes it.
    pub fn required_namespace(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == Field::Namespace && t.equal)
            .map(|t| t.value.as_str())
    }

    /// Whether an object with this name and namespace (`""` for cluster-scoped objects) satisfies every term.
    pub fn matches(&self, name: &str, namespace: &str) -> bool {
        self.terms.iter().all(|term| {
            let actual = match term.field {
                Field::Name => name,
                Field::Namespace => namespace,
            };
            (actual == term.value) == term.equal
        })
    }
}

fn error(message: String) -> SelectorError {
    SelectorError(message)
}

/// Go's `%q` for the ASCII strings selectors contain.
fn go_quote(value: &str) -> String {
    format!("{value:?}")
}

/// Splits at `separator` bytes not preceded by a backslash escape.
fn split_unescaped(input: &str, separator: u8) -> Vec<&str> {
    let bytes = input.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 1,
            b if b == separator => {
                parts.push(&input[start..at]);
                start = at + 1;
            }
            _ => {}
        }
        at += 1;
    }
    parts.push(&input[start.min(input.len())..]);
    parts
}

/// `key!=value`, `key==value` or `key=value`, at the first operator position (as apimachinery's `splitTerm`).
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    let bytes = term.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 1,
            b'!' if bytes.get(at + 1) == Some(&b'=') => {
                return Some((&term[..at], false, &term[at + 2..]));
            }
            b'=' if bytes.get(at + 1) == Some(&b'=') => {
                return Some((&term[..at], true, &term[at + 2..]));
            }
            b'=' => return Some((&term[..at], true, &term[at + 1..])),
            _ => {}
        }
        at += 1;
    }
    None
}

/// apimachinery's `UnescapeValue`: `\\`, `\,` and `\=` are escapes; `,` and `=` unescaped are errors (`!` is an
/// ordinary character, and `\!` an invalid escape).
fn unescape(value: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if matches!(c, ',' | '=') {
            return Err(error(format!(
                "invalid field selector: unescaped character {c}"
            )));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(escaped @ ('\\' | ',' | '=')) => out.push(escaped),
            Some(other) => {
                return Err(error(format!(
                    "invalid field selector: invalid escape sequence: \\{other}"
                )));
            }
            None => {
                return Err(error(
                    "invalid field selector: unterminated escape sequence".to_owned(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on unexpected values.
mod tests;
