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
fn pod_name_hands_out_the_indexed_arc_while_the_pod_is_indexed() {
    let index = Index::default();
    index.apply_pod("ns", "web-0", labels(&[]));
    let listed = index.pods(Some("ns"));
    let name = index.pod_name("ns", "web-0").expect("indexed");
    assert!(Arc::ptr_eq(&name, &listed[0].name), "the pod's own Arc");
    assert_eq!(index.pod_name("ns", "web-1"), None);
    assert_eq!(index.pod_name("other", "web-0"), None);
    index.apply_pod("ns", "web-0", labels(&[("app", "web")]));
    index.replace_pods(vec![("ns".to_owned(), "web-0".to_owned(), Labels::new())]);
    let after = index.pod("ns", "web-0").expect("still indexed");
    assert!(
        Arc::ptr_eq(&name, &after.name),
        "an update and a relist keep the name's Arc"
    );
    index.delete_pod("ns", "web-0");
    assert_eq!(index.pod_name("ns", "web-0"), None);
}

#[test]
fn a_relist_leaves_no_spare_capacity_in_the_label_index() {
    let index = Index::default();
    index.replace_pods((0..37).map(|i| {
        let group = format!("g-{}", i / 10);
        (
            "ns".to_owned(),
            format!("p-{i:02}"),
            labels(&[("app", "web"), ("hpa", &group)]),
        )
    }));
    let state = index.read();
    let by_label = &state.namespaces.get("ns").expect("namespace").by_label;
    let vectors: Vec<(usize, usize)> = by_label
        .values()
        .flat_map(HashMap::values)
        .map(|pods| (pods.len(), pods.capacity()))
        .collect();
    assert_eq!(vectors.len(), 1 + 4, "app=web and four hpa groups");
    assert!(vectors.iter().all(|(len, cap)| len == cap), "{vectors:?}");
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

/// Selectors covering every operator, combinations, and pairs no pod carries.
const SELECTORS: &[&str] = &[
    "",
    "app=web",
    "app==web",
    "app!=web",
    "app in (web)",
    "app in (web,db)",
    "app notin (web)",
    "app",
    "!app",
    "app=web,tier=front",
    "tier=front,app!=db",
    "app=nothing",
    "nothing=web",
    "hpa=h-1,app",
    "app in (db),!tier",
    "tier=",
    "app=web,app=db",
    "tier in (front),hpa notin (h-1)",
    "rank>1",
    "rank<3,app=web",
    "hpa in (h-1),tier in (front,back),app!=db",
];

const NAMESPACES: &[Option<&str>] = &[None, Some("ns-a"), Some("ns-b"), Some("missing")];

/// `(namespace/name)` of every pod `pods_matching` returns, and of what filtering `pods` returns.
fn indexed_and_naive(
    index: &Index,
    namespace: Option<&str>,
    selector: &str,
) -> (Vec<String>, Vec<String>) {
    let selector = LabelSelector::parse(selector).expect("valid selector");
    let name = |p: &PodInfo| format!("{}/{}", p.namespace, p.name);
    let indexed = names(&index.pods_matching(namespace, &selector), name);
    let naive = index
        .pods(namespace)
        .iter()
        .filter(|p| selector.matches(&p.labels))
        .map(|p| name(p))
        .collect();
    (indexed, naive)
}

/// The label index of every namespace holds exactly its pods' pairs, sorted by name, with no empty entries.
fn assert_label_index_is_consistent(index: &Index, when: &str) {
    let state = index.read();
    for (namespace, ns) in &state.namespaces {
        let mut want: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for pod in ns.pods.values() {
            for (key, value) in pod.labels.iter() {
                want.entry((key.to_owned(), value.to_owned()))
                    .or_default()
                    .push(pod.name.to_string());
            }
        }
        let mut got = BTreeMap::new();
        for (key, values) in &ns.by_label {
            assert!(
                !values.is_empty(),
                "{when}: {namespace}: empty key entry {key}"
            );
            for (value, pods) in values {
                got.insert(
                    (key.to_string(), value.to_string()),
                    pods.iter().map(|p| p.name.to_string()).collect::<Vec<_>>(),
                );
            }
        }
        assert_eq!(got, want, "{when}: label index of {namespace}");
    }
}

fn assert_indexed_equals_naive(index: &Index, when: &str) {
    assert_label_index_is_consistent(index, when);
    for selector in SELECTORS {
        for namespace in NAMESPACES {
            let (indexed, naive) = indexed_and_naive(index, *namespace, selector);
            assert_eq!(indexed, naive, "{when}: {selector:?} in {namespace:?}");
        }
    }
}

fn pod(namespace: &str, name: &str, pairs: &[(&str, &str)]) -> (String, String, Labels) {
    (namespace.to_owned(), name.to_owned(), labels(pairs))
}

#[test]
fn selector_lists_from_the_label_index_equal_filtering_every_pod() {
    let index = Index::default();
    assert_indexed_equals_naive(&index, "empty index");
    index.replace_pods(vec![
        pod(
            "ns-b",
            "web-2",
            &[("app", "web"), ("tier", "front"), ("hpa", "h-1")],
        ),
        pod(
            "ns-a",
            "web-1",
            &[("app", "web"), ("tier", "front"), ("rank", "2")],
        ),
        pod(
            "ns-a",
            "web-0",
            &[("app", "web"), ("tier", ""), ("rank", "1")],
        ),
        pod(
            "ns-a",
            "db-0",
            &[("app", "db"), ("tier", "back"), ("hpa", "h-1")],
        ),
        pod("ns-a", "bare", &[]),
        pod("ns-b", "db-1", &[("app", "db"), ("rank", "x")]),
        pod("ns-b", "job", &[("hpa", "h-2"), ("tier", "front")]),
    ]);
    assert_indexed_equals_naive(&index, "after the first list");
    type Step<'a> = (&'a str, &'a dyn Fn(&Index));
    let steps: &[Step<'_>] = &[
        ("a pod changes its app value", &|i| {
            i.apply_pod("ns-a", "web-1", labels(&[("app", "db"), ("tier", "front")]));
        }),
        ("a pod loses every label", &|i| {
            i.apply_pod("ns-b", "web-2", Labels::new())
        }),
        ("a bare pod gains labels", &|i| {
            i.apply_pod("ns-a", "bare", labels(&[("app", "web"), ("hpa", "h-1")]));
        }),
        ("an unchanged pod is applied again", &|i| {
            i.apply_pod("ns-b", "db-1", labels(&[("app", "db"), ("rank", "x")]));
        }),
        ("pods are added in reverse name order", &|i| {
            for n in (0..5).rev() {
                i.apply_pod(
                    "ns-b",
                    &format!("web-{n}"),
                    labels(&[("app", "web"), ("rank", "3")]),
                );
            }
        }),
        ("pods are deleted, one twice and one unknown", &|i| {
            i.delete_pod("ns-a", "db-0");
            i.delete_pod("ns-a", "db-0");
            i.delete_pod("ns-b", "web-3");
            i.delete_pod("missing", "x");
        }),
        ("a relist replaces every pod", &|i| {
            i.replace_pods(vec![
                pod("ns-b", "db-1", &[("app", "web"), ("tier", "back")]),
                pod(
                    "ns-a",
                    "new",
                    &[("app", "db"), ("hpa", "h-1"), ("tier", "front")],
                ),
            ]);
        }),
        ("a whole namespace is deleted", &|i| {
            i.delete_pod("ns-a", "new")
        }),
        ("the last pod is deleted", &|i| i.delete_pod("ns-b", "db-1")),
    ];
    for (when, step) in steps {
        step(&index);
        assert_indexed_equals_naive(&index, when);
    }
    assert!(
        index.read().namespaces.is_empty(),
        "no namespace is left behind"
    );
}

#[test]
fn an_equality_or_in_selector_visits_only_the_pods_carrying_its_values() {
    struct Case {
        name: &'static str,
        selector: &'static str,
        /// How many pods are visited; `None` when every pod is.
        candidates: Option<usize>,
        want: std::ops::Range<usize>,
    }
    let index = Index::default();
    for n in 0..100 {
        let group = format!("h-{}", n / 10);
        index.apply_pod(
            "ns",
            &format!("pod-{n:03}"),
            labels(&[("app", "a"), ("hpa", &group)]),
        );
    }
    let cases = [
        Case {
            name: "the rarer pair is the starting point",
            selector: "app=a,hpa=h-3",
            candidates: Some(10),
            want: 30..40,
        },
        Case {
            name: "a pair no pod carries answers nothing",
            selector: "hpa=h-99,app",
            candidates: Some(0),
            want: 0..0,
        },
        Case {
            name: "in visits the pods of each value, merged in name order",
            selector: "hpa in (h-3,h-2,h-99),app notin (b)",
            candidates: Some(20),
            want: 20..40,
        },
        Case {
            name: "a shared pair is visited only when nothing rarer is required",
            selector: "app==a,hpa!=h-0",
            candidates: Some(100),
            want: 10..100,
        },
        Case {
            name: "without a required value every pod is visited",
            selector: "hpa notin (h-0,h-1,h-2,h-3,h-4,h-5,h-6,h-7,h-8),app",
            candidates: None,
            want: 90..100,
        },
    ];
    for case in cases {
        let selector = LabelSelector::parse(case.selector).expect("valid selector");
        let candidates = index.read().namespaces["ns"]
            .candidates(&selector)
            .map(|pods| pods.len());
        assert_eq!(candidates, case.candidates, "{}: candidates", case.name);
        let got = names(&index.pods_matching(Some("ns"), &selector), |p| {
            p.name.to_string()
        });
        let want: Vec<String> = case.want.map(|n| format!("pod-{n:03}")).collect();
        assert_eq!(got, want, "{}", case.name);
    }
}
