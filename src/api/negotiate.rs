//! Content negotiation: which representation an `Accept` header gets.
//!
//! We only produce JSON, in four shapes: plain JSON, a `meta.k8s.io` `Table` (v1 or v1beta1), and the aggregated
//! discovery document (`apidiscovery.k8s.io` v2 or v2beta1). Entries are tried in client order after a stable sort
//! by `q` and specificity (as apimachinery's `goautoneg`); the first entry we can serve decides. This module must
//! not build bodies.

/// The `Content-Type` of plain JSON responses.
pub(crate) const JSON: &str = "application/json";

/// What a resource (NodeMetrics/PodMetrics) request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectFormat {
    /// The objects as JSON.
    Json,
    /// A `Table` in `meta.k8s.io/<version>`.
    Table(MetaVersion),
}

/// `meta.k8s.io` versions of `Table` and `PartialObjectMetadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaVersion {
    /// `meta.k8s.io/v1`.
    V1,
    /// `meta.k8s.io/v1beta1`.
    V1beta1,
}

/// What a `/apis` request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiscoveryFormat {
    /// `APIGroupList`, plain JSON.
    Legacy,
    /// `APIGroupDiscoveryList` in `apidiscovery.k8s.io/<version>`.
    Aggregated(DiscoveryVersion),
}

/// `apidiscovery.k8s.io` versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiscoveryVersion {
    /// `apidiscovery.k8s.io/v2`.
    V2,
    /// `apidiscovery.k8s.io/v2beta1`.
    V2beta1,
}

/// No offered media type can be produced (406).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotAcceptable;

/// One `Accept` entry.
#[derive(Debug, Clone, PartialEq)]
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    /// Conversion parameters `as`, `g`, `v` (other parameters such as `charset` or `pretty` are ignored).
    conversion: Conversion<'a>,
    /// Quality in thousandths (0..=1000).
    quality: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Conversion<'a> {
    as_kind: Option<&'a str>,
    group: Option<&'a str>,
    version: Option<&'a str>,
}

// === impl MetaVersion ===

impl MetaVersion {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`: the Table's and `PartialObjectMetadata`'s `apiVersion`.
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            MetaVersion::V1 => "meta.k8s.io/v1",
            MetaVersion::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }

    /// The `Content-Type` of a Table in this version.
    pub(crate) fn table_content_type(self) -> &'static str {
        match self {
            MetaVersion::V1 => "application/json;as=Table;v=v1;g=meta.k8s.io",
            MetaVersion::V1beta1 => "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
        }
    }
}

// === impl DiscoveryVersion ===

impl DiscoveryVersion {
    /// `v2` or `v2beta1`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DiscoveryVersion::V2 => "v2",
            DiscoveryVersion::V2beta1 => "v2beta1",
        }
    }

    /// The `Content-Type` echoing the offered version.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            DiscoveryVersion::V2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            DiscoveryVersion::V2beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

// === negotiation ===

/// The representation of NodeMetrics/PodMetrics responses: Table when a Table entry comes first, else JSON.
///
/// # Errors
/// [`NotAcceptable`] when nothing offered is JSON, a JSON wildcard or a Table.
pub(crate) fn object_format(accept: &str) -> Result<ObjectFormat, NotAcceptable> {
    first_servable(accept, ObjectFormat::Json, |conversion| match conversion {
        Conversion {
            as_kind: Some("Table"),
            group: Some("meta.k8s.io"),
            version: Some("v1"),
        } => Some(ObjectFormat::Table(MetaVersion::V1)),
        Conversion {
            as_kind: Some("Table"),
            group: Some("meta.k8s.io"),
            version: Some("v1beta1"),
        } => Some(ObjectFormat::Table(MetaVersion::V1beta1)),
        _ => None,
    })
}

/// The representation of `/apis`: aggregated discovery only in the exact version offered first.
///
/// # Errors
/// [`NotAcceptable`] when nothing offered is JSON, a JSON wildcard or aggregated discovery.
pub(crate) fn discovery_format(accept: &str) -> Result<DiscoveryFormat, NotAcceptable> {
    first_servable(accept, DiscoveryFormat::Legacy, |conversion| {
        match (conversion.as_kind, conversion.group, conversion.version) {
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                Some(DiscoveryFormat::Aggregated(DiscoveryVersion::V2))
            }
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2beta1")) => {
                Some(DiscoveryFormat::Aggregated(DiscoveryVersion::V2beta1))
            }
            _ => None,
        }
    })
}

/// Plain JSON documents (group and version discovery, errors): any JSON entry without conversion parameters.
///
/// # Errors
/// [`NotAcceptable`] when nothing offered is plain JSON or a JSON wildcard.
pub(crate) fn plain_format(accept: &str) -> Result<(), NotAcceptable> {
    first_servable(accept, (), |_| None)
}

/// Walks the sorted entries and returns the first one we can serve: `plain` for JSON without conversion
/// parameters, `convert(...)` for entries with them (unknown conversions are skipped). An empty header means JSON.
fn first_servable<T: Copy>(
    accept: &str,
    plain: T,
    convert: impl Fn(Conversion<'_>) -> Option<T>,
) -> Result<T, NotAcceptable> {
    if accept.trim().is_empty() {
        return Ok(plain);
    }
    for range in parse_accept(accept) {
        // Media types are case-insensitive.
        let json = (range.kind == "*" && range.subtype == "*")
            || (range.kind.eq_ignore_ascii_case("application")
                && (range.subtype == "*" || range.subtype.eq_ignore_ascii_case("json")));
        if !json {
            continue;
        }
        if range.conversion == Conversion::default() {
            return Ok(plain);
        }
        if let Some(found) = convert(range.conversion) {
            return Ok(found);
        }
    }
    Err(NotAcceptable)
}

/// Parses an `Accept` header into entries with `q > 0`, sorted by quality, then specificity (`*/*` last), keeping
/// the client's order otherwise.
fn parse_accept(accept: &str) -> Vec<MediaRange<'_>> {
    let mut ranges: Vec<MediaRange<'_>> = accept.split(',').filter_map(parse_range).collect();
    ranges.sort_by_key(|r| {
        (
            std::cmp::Reverse(r.quality),
            std::cmp::Reverse(specificity(r)),
        )
    });
    ranges
}

fn specificity(range: &MediaRange<'_>) -> u8 {
    match (range.kind, range.subtype) {
        ("*", _) => 0,
        (_, "*") => 1,
        _ => 2,
    }
}

fn parse_range(entry: &str) -> Option<MediaRange<'_>> {
    let mut parts = entry.split(';');
    let media = parts.next()?.trim();
    let (kind, subtype) = media.split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    if kind.is_empty() || subtype.is_empty() {
        return None;
    }
    let mut range = MediaRange {
        kind,
        subtype,
        conversion: Conversion::default(),
        quality: 1000,
    };
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match name.trim() {
            "as" => range.conversion.as_kind = Some(value),
            "g" => range.conversion.group = Some(value),
            "v" => range.conversion.version = Some(value),
            "q" => range.quality = parse_quality(value)?,
            _ => {}
        }
    }
    (range.quality > 0).then_some(range)
}

/// `q` in thousandths; malformed values drop the entry.
fn parse_quality(value: &str) -> Option<u16> {
    let q: f64 = value.parse().ok()?;
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    // In 0..=1000 after the range check.
    Some((q * 1000.0).round() as u16)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on unexpected values.
mod tests {
    use super::*;

    const AGG_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    const AGG_V2B1: &str =
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

    #[test]
    fn object_requests_get_json_or_table() {
        let table_v1 = Ok(ObjectFormat::Table(MetaVersion::V1));
        let cases: Vec<(&str, &str, Result<ObjectFormat, NotAcceptable>)> = vec![
            ("no accept", "", Ok(ObjectFormat::Json)),
            ("json", "application/json", Ok(ObjectFormat::Json)),
            (
                "protobuf first falls back to any",
                "application/vnd.kubernetes.protobuf, */*",
                Ok(ObjectFormat::Json),
            ),
            (
                "protobuf then json",
                "application/vnd.kubernetes.protobuf,application/json",
                Ok(ObjectFormat::Json),
            ),
            (
                "application wildcard",
                "application/*",
                Ok(ObjectFormat::Json),
            ),
            (
                "json with charset",
                "application/json; charset=utf-8",
                Ok(ObjectFormat::Json),
            ),
            (
                "kubectl get table list",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
                table_v1,
            ),
            (
                "table v1beta1",
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json",
                Ok(ObjectFormat::Table(MetaVersion::V1beta1)),
            ),
            (
                "table params in any order",
                "application/json;g=meta.k8s.io;v=v1;as=Table",
                table_v1,
            ),
            (
                "more specific table beats a wildcard",
                "*/*,application/json;as=Table;v=v1;g=meta.k8s.io",
                table_v1,
            ),
            (
                "json before table wins",
                "application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
                Ok(ObjectFormat::Json),
            ),
            (
                "quality orders",
                "application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io",
                table_v1,
            ),
            (
                "protobuf only",
                "application/vnd.kubernetes.protobuf",
                Err(NotAcceptable),
            ),
            ("yaml only", "application/yaml", Err(NotAcceptable)),
            (
                "upper case json",
                "Application/JSON",
                Ok(ObjectFormat::Json),
            ),
            (
                "json refused by q=0",
                "application/json;q=0",
                Err(NotAcceptable),
            ),
            (
                "unknown conversion only",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                Err(NotAcceptable),
            ),
            (
                "table in unknown version",
                "application/json;as=Table;v=v2;g=meta.k8s.io,*/*",
                Ok(ObjectFormat::Json),
            ),
        ];
        for (name, accept, want) in cases {
            assert_eq!(object_format(accept), want, "{name}");
        }
    }

    #[test]
    fn discovery_is_aggregated_only_in_the_version_offered_first() {
        let v2 = Ok(DiscoveryFormat::Aggregated(DiscoveryVersion::V2));
        let v2b1 = Ok(DiscoveryFormat::Aggregated(DiscoveryVersion::V2beta1));
        let both = format!("{AGG_V2},{AGG_V2B1},application/json");
        let beta_first = format!("{AGG_V2B1},application/json");
        let reordered = "application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io";
        let json_first = format!("application/json,{AGG_V2}");
        let wrong_group = "application/json;g=apidiscovery.example;v=v2;as=APIGroupDiscoveryList";
        let cases: Vec<(&str, &str, Result<DiscoveryFormat, NotAcceptable>)> = vec![
            ("kubectl 1.30", &both, v2),
            ("kubectl 1.27 offers only v2beta1", &beta_first, v2b1),
            ("parameters compared as a set", reordered, v2),
            (
                "json first means legacy",
                &json_first,
                Ok(DiscoveryFormat::Legacy),
            ),
            (
                "kubectl 1.20",
                "application/json, */*",
                Ok(DiscoveryFormat::Legacy),
            ),
            ("wrong group falls through", wrong_group, Err(NotAcceptable)),
            (
                "protobuf only",
                "application/vnd.kubernetes.protobuf",
                Err(NotAcceptable),
            ),
            ("no accept", "", Ok(DiscoveryFormat::Legacy)),
        ];
        for (name, accept, want) in cases {
            assert_eq!(discovery_format(accept), want, "{name}");
        }
    }

    #[test]
    fn plain_documents_need_plain_json() {
        assert_eq!(
            plain_format("application/json;as=Table;v=v1;g=meta.k8s.io"),
            Err(NotAcceptable)
        );
        assert_eq!(
            plain_format("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
            Ok(())
        );
        assert_eq!(plain_format("text/html"), Err(NotAcceptable));
    }
}
