//! Table-driven tests of field selector parsing, matching and error messages.

use super::*;

#[test]
fn field_selectors_accept_name_and_namespace_only() {
    let cases: &[(&str, &str, &str, &str, bool)] = &[
        ("empty matches", "", "a", "ns", true),
        ("name equals", "metadata.name=a", "a", "ns", true),
        ("name double equals", "metadata.name==a", "b", "ns", false),
        ("name not equals", "metadata.name!=a", "b", "ns", true),
        ("namespace", "metadata.namespace=ns", "a", "ns", true),
        (
            "namespace of a node is empty",
            "metadata.namespace=ns",
            "a",
            "",
            false,
        ),
        (
            "both terms",
            "metadata.name=a,metadata.namespace!=ns",
            "a",
            "ns",
            false,
        ),
        (
            "escaped comma in value",
            "metadata.name=a\\,b",
            "a,b",
            "",
            true,
        ),
    ];
    for (name, selector, object, namespace, want) in cases {
        let parsed = FieldSelector::parse(selector).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.matches(object, namespace), *want, "{name}");
    }
}

#[test]
fn unknown_fields_and_bad_terms_are_rejected() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "node name",
            "spec.nodeName=node-a",
            "\"spec.nodeName\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
        ),
        (
            "no operator",
            "metadata.name",
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
        ),
    ];
    for (name, selector, want) in cases {
        assert_eq!(
            FieldSelector::parse(selector).unwrap_err().0,
            *want,
            "{name}"
        );
    }
}

#[test]
fn a_fixed_namespace_is_exposed_for_narrowing() {
    let selector = FieldSelector::parse("metadata.namespace=kube-system").unwrap();
    assert_eq!(selector.required_namespace(), Some("kube-system"));
    assert_eq!(
        FieldSelector::parse("metadata.namespace!=x")
            .unwrap()
            .required_namespace(),
        None
    );
}

/// Regression inputs found by `fuzz/fuzz_targets/selector.rs` (structured field mode): apimachinery's
/// `UnescapeValue` only knows `\\`, `\,` and `\=`, so `!` is an ordinary character and `\!` an invalid escape.
#[test]
fn field_selector_values_treat_bang_like_apimachinery() {
    let matching: &[(&str, &str, &str, &str)] = &[
        (
            "bang in a not-equals value",
            "metadata.namespace!=a!b",
            "x",
            "ns",
        ),
        ("bang in an equals value", "metadata.name=a!b", "a!b", ""),
        (
            "bang next to an escaped comma",
            "metadata.name=!\\,!",
            "!,!",
            "",
        ),
    ];
    for (name, selector, object, namespace) in matching {
        let parsed = FieldSelector::parse(selector).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(parsed.matches(object, namespace), "{name}");
    }
    assert_eq!(
        FieldSelector::parse("metadata.name=\\!").unwrap_err().0,
        "invalid field selector: invalid escape sequence: \\!",
        "an escaped bang is not an escape"
    );
}
