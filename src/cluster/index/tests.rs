#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which invariant broke.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn node(name: &str, pairs: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: Arc::from(name),
        labels: Arc::new(labels(pairs)),
        target: None,
    }
}

fn names<T>(items: &[Arc<T>], name: impl Fn(&T) -> String) -> Vec<String> {
    items.iter().map(|i| name(i)).collect()
}

#[test]
fn selector_grammar_matches_like_apimachinery() {
    struct Case {
        name: &'static str,
        selector: &'static str,
        labels: &'static [(&'static str, &'static str)],
        want: bool,
    }
    let cases = [
        Case {
            name: "empty selector matches everything",
            selector: "",
            labels: &[],
            want: true,
        },
        Case {
            name: "equals matches",
            selector: "a=b",
            labels: &[("a", "b")],
            want: true,
        },
        Case {
            name: "double equals matches",
            selector: "a==b",
            labels: &[("a", "b")],
            want: true,
        },
        Case {
            name: "equals needs the key",
            selector: "a=b",
            labels: &[],
            want: false,
        },
        Case {
            name: "not-equals matches a missing key",
            selector: "skip!=true",
            labels: &[],
            want: true,
        },
        Case {
            name: "not-equals rejects the value",
            selector: "skip!=true",
            labels: &[("skip", "true")],
            want: false,
        },
        Case {
            name: "comma is and",
            selector: "a=b, c!=d",
            labels: &[("a", "b"), ("c", "d")],
            want: false,
        },
        Case {
            name: "in matches a listed value",
            selector: "zone in (x, y)",
            labels: &[("zone", "y")],
            want: true,
        },
        Case {
            name: "in needs the key",
            selector: "zone in (x,y)",
            labels: &[],
            want: false,
        },
        Case {
            name: "notin matches a missing key",
            selector: "zone notin (x)",
            labels: &[],
            want: true,
        },
        Case {
            name: "notin rejects a listed value",
            selector: "zone notin (x)",
            labels: &[("zone", "x")],
            want: false,
        },
        Case {
            name: "exists",
            selector: "node-role.kubernetes.io/control-plane",
            labels: &[],
            want: false,
        },
        Case {
            name: "does not exist",
            selector: "!gpu",
            labels: &[("cpu", "x")],
            want: true,
        },
        Case {
            name: "prefixed key with empty value",
            selector: "example.com/k=",
            labels: &[("example.com/k", "")],
            want: true,
        },
    ];
    for case in cases {
        let selector =
            NodeSelector::parse(case.selector).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            selector.matches(&labels(case.labels)),
            case.want,
            "{}",
            case.name
        );
    }
}

#[test]
fn malformed_selectors_are_rejected() {
    for bad in [
        "a=b,",
        "=b",
        "a in (x",
        "a in x)",
        "a=b c",
        "a foo (x)",
        "-a=b",
        "a=-b-",
        "a in ((x))",
    ] {
        let err = NodeSelector::parse(bad).err();
        assert!(err.is_some(), "{bad:?} should not parse");
        assert_eq!(
            err.map(|e| e.selector),
            Some(bad.to_owned()),
            "the error names the selector"
        );
    }
}

#[test]
fn nodes_are_sorted_and_filtered_by_the_selector_but_get_ignores_it() {
    let index = Index::new(NodeSelector::parse("skip!=true").expect("valid selector"));
    index.apply_node(node("n2", &[]));
    index.apply_node(node("n1", &[]));
    index.apply_node(node("n3", &[("skip", "true")]));
    assert_eq!(names(&index.nodes(), |n| n.name.to_string()), ["n1", "n2"]);
    assert!(index.node("n3").is_some(), "get ignores the selector");
    index.delete_node("n1");
    assert_eq!(names(&index.nodes(), |n| n.name.to_string()), ["n2"]);
}

#[test]
fn a_relist_replaces_the_node_set_and_marks_it_synced() {
    let index = Index::default();
    index.apply_node(node("gone", &[]));
    assert!(!index.is_synced());
    index.replace_nodes(vec![node("b", &[]), node("a", &[])]);
    index.replace_pods(Vec::new());
    assert!(index.is_synced());
    assert_eq!(names(&index.nodes(), |n| n.name.to_string()), ["a", "b"]);
    assert!(index.node("gone").is_none());
}

#[test]
fn pods_list_by_namespace_in_name_order_and_share_the_namespace_name() {
    let index = Index::default();
    index.apply_pod("ns2", "b", Labels::new());
    index.apply_pod("ns1", "z", labels(&[("app", "web")]));
    index.apply_pod("ns1", "a", Labels::new());
    let all = index.pods(None);
    assert_eq!(
        names(&all, |p| format!("{}/{}", p.namespace, p.name)),
        ["ns1/a", "ns1/z", "ns2/b"]
    );
    let ns1 = index.pods(Some("ns1"));
    assert_eq!(names(&ns1, |p| p.name.to_string()), ["a", "z"]);
    assert!(
        Arc::ptr_eq(&ns1[0].namespace, &ns1[1].namespace),
        "namespace is interned"
    );
    assert!(index.pods(Some("missing")).is_empty());
    assert_eq!(
        index
            .pod("ns1", "z")
            .map(|p| p.labels.get("app").map(str::to_owned)),
        Some(Some("web".to_owned()))
    );
}

#[test]
fn deleting_the_last_pod_of_a_namespace_removes_the_namespace() {
    let index = Index::default();
    index.apply_pod("ns", "p", Labels::new());
    index.delete_pod("ns", "p");
    index.delete_pod("ns", "p");
    assert!(index.pods(None).is_empty());
    assert!(index.is_empty());
}

#[test]
fn a_pod_relist_replaces_every_pod() {
    let index = Index::default();
    index.apply_pod("old", "p", Labels::new());
    index.replace_pods(vec![("ns".to_owned(), "q".to_owned(), Labels::new())]);
    assert!(index.pod("old", "p").is_none());
    assert!(index.pod("ns", "q").is_some());
    assert_eq!(index.len(), (0, 1));
}

#[test]
fn pods_with_equal_labels_share_one_label_map_until_the_last_goes() {
    let index = Index::default();
    let web = labels(&[("app", "web"), ("pod-template-hash", "5f7c")]);
    index.apply_pod("ns", "web-1", web.clone());
    index.apply_pod("other", "web-2", web.clone());
    index.apply_pod("ns", "db-0", labels(&[("app", "db")]));
    let one = index.pod("ns", "web-1").expect("web-1");
    let two = index.pod("other", "web-2").expect("web-2");
    assert!(
        Arc::ptr_eq(&one.labels, &two.labels),
        "equal label sets are shared"
    );
    assert_eq!(index.read().labels.len(), 2);
    drop((one, two)); // readers holding pods would keep their label set interned until the next relist
    index.delete_pod("ns", "web-1");
    assert_eq!(index.read().labels.len(), 2, "web-2 still uses the set");
    index.delete_pod("other", "web-2");
    index.apply_pod("ns", "db-0", labels(&[("app", "db"), ("v", "2")]));
    assert_eq!(
        index.read().labels.len(),
        1,
        "unused sets are dropped on delete and on replace"
    );
}
