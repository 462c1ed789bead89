//! Table-driven tests of label selector parsing, matching and apimachinery's error messages.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn label_selectors_match_like_apimachinery() {
    struct Case {
        name: &'static str,
        selector: &'static str,
        matching: &'static [&'static [(&'static str, &'static str)]],
        not_matching: &'static [&'static [(&'static str, &'static str)]],
    }
    let cases = [
        Case {
            name: "empty matches all",
            selector: "",
            matching: &[&[], &[("a", "b")]],
            not_matching: &[],
        },
        Case {
            name: "blank matches all",
            selector: "  ",
            matching: &[&[]],
            not_matching: &[],
        },
        Case {
            name: "exists",
            selector: "app",
            matching: &[&[("app", "")]],
            not_matching: &[&[("x", "y")]],
        },
        Case {
            name: "does not exist",
            selector: "!app",
            matching: &[&[]],
            not_matching: &[&[("app", "x")]],
        },
        Case {
            name: "equals",
            selector: "app=web",
            matching: &[&[("app", "web")]],
            not_matching: &[&[("app", "db")], &[]],
        },
        Case {
            name: "double equals",
            selector: "app==web",
            matching: &[&[("app", "web")]],
            not_matching: &[&[]],
        },
        Case {
            name: "not equals matches absent keys",
            selector: "app!=web",
            matching: &[&[], &[("app", "db")]],
            not_matching: &[&[("app", "web")]],
        },
        Case {
            name: "in",
            selector: "app in (x,y)",
            matching: &[&[("app", "x")], &[("app", "y")]],
            not_matching: &[&[("app", "z")], &[]],
        },
        Case {
            name: "notin matches absent keys",
            selector: "app notin (x,y)",
            matching: &[&[], &[("app", "z")]],
            not_matching: &[&[("app", "x")]],
        },
        Case {
            name: "empty value set holds the empty string",
            selector: "app in ()",
            matching: &[&[("app", "")]],
            not_matching: &[&[("app", "x")]],
        },
        Case {
            name: "greater than compares integers",
            selector: "gen>1",
            matching: &[&[("gen", "2")], &[("gen", "10")]],
            not_matching: &[&[("gen", "1")], &[("gen", "x")], &[]],
        },
        Case {
            name: "less than compares integers",
            selector: "gen<10",
            matching: &[&[("gen", "9")]],
            not_matching: &[&[("gen", "10")], &[]],
        },
        Case {
            name: "canonical kubectl form with plus-decoded spaces",
            selector: "app in (x,y),!legacy,tier!=db",
            matching: &[&[("app", "x"), ("tier", "web")]],
            not_matching: &[
                &[("app", "x"), ("legacy", "1")],
                &[("app", "y"), ("tier", "db")],
            ],
        },
        Case {
            name: "whitespace around tokens",
            selector: " app = web , tier\t!=\tdb ",
            matching: &[&[("app", "web")]],
            not_matching: &[&[("app", "web"), ("tier", "db")]],
        },
        Case {
            name: "empty exact value",
            selector: "app=",
            matching: &[&[("app", "")]],
            not_matching: &[&[("app", "x")], &[]],
        },
        Case {
            name: "keywords are values in value position",
            selector: "in in (in,notin)",
            matching: &[&[("in", "notin")]],
            not_matching: &[&[("in", "x")]],
        },
        Case {
            name: "prefixed keys",
            selector: "kubernetes.io/os=linux",
            matching: &[&[("kubernetes.io/os", "linux")]],
            not_matching: &[&[("os", "linux")]],
        },
    ];
    for case in cases {
        let selector =
            LabelSelector::parse(case.selector).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for set in case.matching {
            assert!(
                selector.matches(&labels(set)),
                "{}: should match {set:?}",
                case.name
            );
        }
        for set in case.not_matching {
            assert!(
                !selector.matches(&labels(set)),
                "{}: should not match {set:?}",
                case.name
            );
        }
    }
}

#[test]
fn invalid_label_selectors_give_apimachinery_messages() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "trailing bang",
            "!",
            "unable to parse requirement: found '', expected: identifier",
        ),
        (
            "dangling comma",
            "a,",
            "found '', expected: identifier after ','",
        ),
        (
            "leading comma",
            ",a",
            "found ',', expected: !, identifier, or 'end of string'",
        ),
        (
            "two values",
            "a=b c",
            "found 'c', expected: ',' or 'end of string'",
        ),
        (
            "missing operator",
            "a (b)",
            "unable to parse requirement: found '(', expected: '=', '!=', '==', 'in', notin'",
        ),
        (
            "in without parens",
            "a in b",
            "unable to parse requirement: found 'b' expected: '('",
        ),
        (
            "unclosed set",
            "a in (b",
            "unable to parse requirement: found '', expected: ',' or ')'",
        ),
        (
            "operator as value",
            "a==!",
            "unable to parse requirement: found '!', expected: identifier",
        ),
        (
            "gt needs an integer",
            "a>b",
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "bad value",
            "a=-x",
            "unable to parse requirement: values[0][a]: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        (
            "bad key",
            "-a=b",
            "unable to parse requirement: key: Invalid value: \"-a\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        (
            "empty prefix",
            "/a",
            "unable to parse requirement: key: Invalid value: \"/a\": prefix part must be non-empty",
        ),
        (
            "too long key",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "name part must be no more than 63 characters",
        ),
    ];
    for (name, input, want) in cases {
        let err = LabelSelector::parse(input).expect_err(name);
        assert!(
            err.0.ends_with(want) || err.0 == *want,
            "{name}: got {:?}, want {:?}",
            err.0,
            want
        );
        if !want.starts_with("name part") {
            assert_eq!(err.0, *want, "{name}");
        }
    }
}

#[test]
fn two_bad_values_are_aggregated_in_brackets() {
    let err = LabelSelector::parse("a in (-x,-y)").unwrap_err();
    assert!(
        err.0
            .starts_with("unable to parse requirement: [values[0][a]: Invalid value: \"-x\""),
        "{}",
        err.0
    );
    assert!(
        err.0.contains(", values[1][a]: Invalid value: \"-y\""),
        "{}",
        err.0
    );
}
