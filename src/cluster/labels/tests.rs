//! Table-driven tests of [`Labels`]: map semantics, order, and the JSON it serialises to.

#![allow(clippy::unwrap_used)] // A test fails by panicking.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn labels_behave_like_the_map_they_were_built_from() {
    struct Case {
        name: &'static str,
        pairs: &'static [(&'static str, &'static str)],
        absent: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "empty set",
            pairs: &[],
            absent: &["", "app"],
        },
        Case {
            name: "one pair",
            pairs: &[("app", "web")],
            absent: &["ap", "appx", ""],
        },
        Case {
            name: "unsorted input comes out sorted",
            pairs: &[("hpa", "h-123"), ("app", "app-3"), ("zone", "a"), ("b", "")],
            absent: &["a", "c", "zzz", "hp"],
        },
        Case {
            name: "empty key and empty values",
            pairs: &[("", "x"), ("k", ""), ("example.com/k", "")],
            absent: &["example.com", "k2"],
        },
        Case {
            name: "a key that is a prefix of another and of the value text",
            pairs: &[("a", "ab"), ("ab", "a"), ("abc", "")],
            absent: &["b", "aba"],
        },
        Case {
            name: "multi-byte text",
            pairs: &[("ключ", "значение"), ("é", "ü")],
            absent: &["ключи"],
        },
    ];
    for case in cases {
        let want = map(case.pairs);
        let labels = Labels::from(&want);
        let collected: Labels = case.pairs.iter().copied().collect();
        assert_eq!(labels, collected, "{}: from map = collected", case.name);
        assert_eq!(labels.len(), want.len(), "{}: len", case.name);
        assert_eq!(
            labels.is_empty(),
            want.is_empty(),
            "{}: is_empty",
            case.name
        );
        let got: Vec<(&str, &str)> = labels.iter().collect();
        let expected: Vec<(&str, &str)> =
            want.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected, "{}: iter in key order", case.name);
        assert_eq!(labels.iter().len(), want.len(), "{}: exact size", case.name);
        for (key, value) in &want {
            assert_eq!(
                labels.get(key),
                Some(value.as_str()),
                "{}: get {key}",
                case.name
            );
            assert!(labels.contains_key(key), "{}: contains {key}", case.name);
        }
        for key in case.absent {
            assert_eq!(labels.get(key), None, "{}: get absent {key}", case.name);
            assert!(
                !labels.contains_key(key),
                "{}: contains absent {key}",
                case.name
            );
        }
        assert_eq!(
            serde_json::to_string(&labels).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "{}: same JSON as the map",
            case.name
        );
        assert_eq!(
            format!("{labels:?}"),
            format!("{want:?}"),
            "{}: Debug like the map",
            case.name
        );
    }
}

#[test]
fn a_repeated_key_keeps_the_last_value_like_a_map_insert() {
    let labels: Labels = [("a", "1"), ("b", "x"), ("a", "2"), ("a", "3")]
        .into_iter()
        .collect();
    assert_eq!(labels.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "x")]);
}

#[test]
fn equal_sets_are_equal_and_hash_alike_whatever_the_input_order() {
    let one: Labels = [("app", "web"), ("tier", "db")].into_iter().collect();
    let two: Labels = [("tier", "db"), ("app", "web")].into_iter().collect();
    let other: Labels = [("app", "webt"), ("ier", "db")].into_iter().collect();
    let state = RandomState::new();
    assert_eq!(one, two);
    assert_eq!(state.hash_one(&one), state.hash_one(&two));
    assert_ne!(one, other, "same text, different split");
    assert_eq!(Labels::new(), Labels::from(BTreeMap::new()));
}
