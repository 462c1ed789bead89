//! Accept-header negotiation as kube-apiserver does it: aggregated discovery v2 / v2beta1 versus legacy documents,
//! and Table / PartialObjectMetadata / plain JSON for objects. Protobuf offers are skipped (we answer JSON; clients
//! decode by Content-Type).
//!
//! Pure string handling; it must not build response bodies.

/// One media range of an Accept header: type and parameters (lower-cased keys).
struct MediaRange<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

/// What a discovery request (`/api`, `/apis`) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFormat {
    /// `apidiscovery.k8s.io/v2` APIGroupDiscoveryList.
    AggregatedV2,
    /// `apidiscovery.k8s.io/v2beta1` APIGroupDiscoveryList.
    AggregatedV2Beta1,
    /// APIVersions / APIGroupList as plain JSON.
    Legacy,
}

/// How an object read (list, get, watch) is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    /// The full objects.
    Json,
    /// A `meta.k8s.io` Table of this version (`v1` or `v1beta1`).
    Table(&'static str),
    /// `PartialObjectMetadata(List)` of this version.
    Metadata(&'static str),
}

fn parse(accept: &str) -> Vec<MediaRange<'_>> {
    accept
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let essence = parts.next().filter(|e| !e.is_empty())?;
            let params = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            Some(MediaRange { essence, params })
        })
        .collect()
}

impl MediaRange<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }

    fn is_json(&self) -> bool {
        self.essence.eq_ignore_ascii_case("application/json")
            || self.essence == "*/*"
            || self.essence == "application/*"
    }
}

/// Picks the discovery format from the first acceptable Accept entry, comparing `g`, `v`, `as` as a set.
pub fn discovery_format(accept: Option<&str>) -> DiscoveryFormat {
    let Some(accept) = accept else {
        return DiscoveryFormat::Legacy;
    };
    for range in parse(accept) {
        if !range.is_json() {
            continue;
        }
        match (range.param("g"), range.param("v"), range.param("as")) {
            (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => {
                return DiscoveryFormat::AggregatedV2;
            }
            (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                return DiscoveryFormat::AggregatedV2Beta1;
            }
            (None, None, None) => return DiscoveryFormat::Legacy,
            _ => {}
        }
    }
    DiscoveryFormat::Legacy
}

/// Picks the object format from the first acceptable Accept entry; anything unknown falls back to JSON.
pub fn object_format(accept: Option<&str>) -> ObjectFormat {
    let Some(accept) = accept else {
        return ObjectFormat::Json;
    };
    for range in parse(accept) {
        if !range.is_json() {
            continue;
        }
        let version = match range.param("v") {
            Some("v1beta1") => "v1beta1",
            _ => "v1",
        };
        match range.param("as") {
            None => return ObjectFormat::Json,
            Some("Table") => return ObjectFormat::Table(version),
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") => {
                return ObjectFormat::Metadata(version);
            }
            Some(_) => {}
        }
    }
    ObjectFormat::Json
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGG_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    const AGG_V2B1: &str =
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

    #[test]
    fn discovery_follows_the_first_acceptable_entry() {
        struct Case {
            name: &'static str,
            accept: Option<String>,
            want: DiscoveryFormat,
        }
        let cases = [
            Case {
                name: "kubectl 1.30+",
                accept: Some(format!("{AGG_V2},{AGG_V2B1},application/json")),
                want: DiscoveryFormat::AggregatedV2,
            },
            Case {
                name: "kubectl 1.27-1.29 offer only v2beta1",
                accept: Some(format!("{AGG_V2B1},application/json")),
                want: DiscoveryFormat::AggregatedV2Beta1,
            },
            Case {
                name: "kubectl 1.20 plain json",
                accept: Some("application/json, */*".into()),
                want: DiscoveryFormat::Legacy,
            },
            Case {
                name: "no accept header",
                accept: None,
                want: DiscoveryFormat::Legacy,
            },
            Case {
                name: "parameter order does not matter",
                accept: Some(
                    "application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io".into(),
                ),
                want: DiscoveryFormat::AggregatedV2,
            },
        ];
        for case in cases {
            assert_eq!(
                discovery_format(case.accept.as_deref()),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn objects_honour_table_and_metadata_offers_and_ignore_protobuf() {
        struct Case {
            name: &'static str,
            accept: &'static str,
            want: ObjectFormat,
        }
        let cases = [
            Case {
                name: "kubectl get table",
                accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
                want: ObjectFormat::Table("v1"),
            },
            Case {
                name: "protobuf first",
                accept: "application/vnd.kubernetes.protobuf,application/json",
                want: ObjectFormat::Json,
            },
            Case {
                name: "kube-rs metadata list",
                accept: "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
                want: ObjectFormat::Metadata("v1"),
            },
            Case {
                name: "kube-rs metadata watch",
                accept: "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                want: ObjectFormat::Metadata("v1"),
            },
        ];
        for case in cases {
            assert_eq!(object_format(Some(case.accept)), case.want, "{}", case.name);
        }
    }
}
