//! Label and field selectors as kube-apiserver evaluates them for nodes and pods (`labelSelector`,
//! `fieldSelector` query parameters, already form-decoded).
//!
//! Pure parsing and matching; it must not know about HTTP.

use std::collections::BTreeMap;

/// A parse error, answered as 400 BadRequest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelRequirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed field selector: `field=value` / `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Splits on commas outside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in input.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn set_values(rest: &str) -> Result<Vec<String>, SelectorError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError(format!("expected a parenthesised set, got {rest:?}")))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parses `app=x,tier!=db,env in (a,b),!legacy,has`.
    ///
    /// # Errors
    /// [`SelectorError`] for malformed requirements.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_top_level(input) {
            let requirement = if let Some(key) = term.strip_prefix('!') {
                LabelRequirement::NotExists(key.trim().to_owned())
            } else if let Some((key, value)) = term.split_once("!=") {
                LabelRequirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                LabelRequirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, rest)) = term.split_once(" notin ") {
                LabelRequirement::NotIn(key.trim().to_owned(), set_values(rest)?)
            } else if let Some((key, rest)) = term.split_once(" in ") {
                LabelRequirement::In(key.trim().to_owned(), set_values(rest)?)
            } else if term
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                LabelRequirement::Exists(term.to_owned())
            } else {
                return Err(SelectorError(format!(
                    "unable to parse requirement: {term:?}"
                )));
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => labels.get(k) == Some(v),
            LabelRequirement::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelRequirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelRequirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelRequirement::Exists(k) => labels.contains_key(k),
            LabelRequirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

impl FieldSelector {
    /// Parses `a=b,c!=d` and checks every field is in `supported`.
    ///
    /// # Errors
    /// [`SelectorError`] for malformed terms or unsupported fields (kube-apiserver's "field label not supported").
    pub fn parse(input: &str, supported: &[&str]) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in split_top_level(input) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(SelectorError(format!("field label not supported: {field}")));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether the object's fields (looked up through `field`) satisfy every term.
    pub fn matches(&self, field: impl Fn(&str) -> String) -> bool {
        self.0
            .iter()
            .all(|(name, equal, value)| (field(name) == *value) == *equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_match_like_kube_apiserver() {
        struct Case {
            name: &'static str,
            selector: &'static str,
            labels: &'static [(&'static str, &'static str)],
            want: bool,
        }
        let cases = [
            Case {
                name: "equality holds",
                selector: "app=web",
                labels: &[("app", "web")],
                want: true,
            },
            Case {
                name: "equality fails",
                selector: "app=web",
                labels: &[("app", "db")],
                want: false,
            },
            Case {
                name: "inequality with missing key holds",
                selector: "tier!=db",
                labels: &[],
                want: true,
            },
            Case {
                name: "canonical set-based form from kubectl",
                selector: "app in (x,y),!legacy,tier!=db",
                labels: &[("app", "y"), ("tier", "web")],
                want: true,
            },
            Case {
                name: "not-exists fails when present",
                selector: "!legacy",
                labels: &[("legacy", "1")],
                want: false,
            },
            Case {
                name: "notin with missing key holds",
                selector: "env notin (prod)",
                labels: &[],
                want: true,
            },
            Case {
                name: "exists",
                selector: "app",
                labels: &[("app", "")],
                want: true,
            },
            Case {
                name: "empty selector matches all",
                selector: "",
                labels: &[],
                want: true,
            },
        ];
        for case in cases {
            let labels = case
                .labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let selector = LabelSelector::parse(case.selector).unwrap();
            assert_eq!(selector.matches(&labels), case.want, "{}", case.name);
        }
    }

    #[test]
    fn field_selectors_reject_unsupported_fields() {
        let supported = ["metadata.name", "status.phase"];
        assert!(
            FieldSelector::parse("status.phase=Running", &supported)
                .unwrap()
                .matches(|_| "Running".into())
        );
        assert!(
            !FieldSelector::parse("status.phase!=Running", &supported)
                .unwrap()
                .matches(|_| "Running".into())
        );
        assert_eq!(
            FieldSelector::parse("spec.bogus=x", &supported),
            Err(SelectorError(
                "field label not supported: spec.bogus".into()
            ))
        );
    }
}
