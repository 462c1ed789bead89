//! Kubelet `/metrics/resource` body (Prometheus text 0.0.4) → [`NodeBatch`]. Pure, allocation-light, fuzzed and
//! benchmarked; knows nothing of sockets or storage.

use std::borrow::Cow;

use foldhash::HashMap;

use crate::time::TimestampMs;

/// A cumulative CPU counter sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Cumulative CPU time, in nanocore-seconds (nanoseconds of CPU time) since the node/container started.
    pub cumulative_cpu_ns: u64,
    /// Sample time in ms since the epoch (the line's own timestamp, or the request time when it has none).
    pub timestamp_ms: TimestampMs,
}

/// An instantaneous byte gauge sample (working set, swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeSample {
    /// Value in bytes.
    pub bytes: u64,
    /// Sample time in ms since the epoch (the line's own timestamp, or the request time when it has none).
    pub timestamp_ms: TimestampMs,
}

/// The node-level series of one body. Absent or rejected series are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeSample {
    /// `node_cpu_usage_seconds_total`.
    pub cpu: Option<CpuSample>,
    /// `node_memory_working_set_bytes`.
    pub memory: Option<GaugeSample>,
    /// `node_swap_usage_bytes`.
    pub swap: Option<GaugeSample>,
}

/// One container's series from one body. Absent or rejected series are `None`.
///
/// Names borrow from the body unless a label value held an escape: a body decodes without one allocation per name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSample<'a> {
    /// `namespace` label.
    pub namespace: Cow<'a, str>,
    /// `pod` label.
    pub pod: Cow<'a, str>,
    /// `container` label.
    pub container: Cow<'a, str>,
    /// `container_cpu_usage_seconds_total`.
    pub cpu: Option<CpuSample>,
    /// `container_memory_working_set_bytes`.
    pub memory: Option<GaugeSample>,
    /// `container_swap_usage_bytes`.
    pub swap: Option<GaugeSample>,
    /// `container_start_time_seconds`, converted to ms since the epoch (the value, never the line's timestamp).
    pub start_time_ms: Option<TimestampMs>,
}

/// Everything one kubelet body says that the server uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeBatch<'a> {
    /// Node series.
    pub node: NodeSample,
    /// Containers sorted by (namespace, pod, container), one entry per container (duplicate lines: last wins).
    pub containers: Vec<ContainerSample<'a>>,
    /// The kubelet reported `resource_scrape_error 1` (or the deprecated `scrape_error 1`): it failed to collect.
    pub kubelet_error: bool,
    /// Series of a used family rejected individually (NaN, ±Inf, negative, > i64::MAX, missing labels).
    pub rejected_series: u32,
}

/// Why a whole body was refused. Cheap to build (no allocation); rendered only when logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line of a used family is not valid Prometheus text 0.0.4 (bad label set, value token, or timestamp,
    /// including a negative or non-integer timestamp).
    #[error("malformed kubelet metrics body at line {line}: {reason}")]
    Malformed {
        /// 1-based line number in the body.
        line: usize,
        /// What was wrong, as a fixed phrase.
        reason: &'static str,
    },
}

/// Decodes one kubelet `/metrics/resource` body (Prometheus text 0.0.4, uncompressed).
///
/// `default_timestamp_ms` (ms since the epoch, normally the request send time) stamps samples that carry no
/// timestamp of their own.
///
/// Rules:
/// - Used families (exact name, followed by `{`, a blank or the end of the name token): `node_cpu_usage_seconds_total`,
///   `node_memory_working_set_bytes`, `node_swap_usage_bytes`, `container_cpu_usage_seconds_total`,
///   `container_memory_working_set_bytes`, `container_swap_usage_bytes`, `container_start_time_seconds`,
///   `resource_scrape_error`, `scrape_error`, and the Kubernetes 1.18.0 names `node_cpu_usage_seconds` /
///   `container_cpu_usage_seconds`. Every other line (comments including `# HELP`/`# TYPE`/`# EOF`, blank lines,
///   `pod_*`, unknown families) is skipped without being parsed.
/// - Labels are parsed properly (escapes `\\`, `\"`, `\n`; any other escape is malformed), in any order; unknown
///   labels are ignored. A container series without a non-empty `container`, `namespace` and `pod` is rejected.
/// - Values are Go float text. NaN, ±Inf, negative values, and values whose converted unit (ns, bytes, ms) exceeds
///   `i64::MAX` are rejected. CPU seconds → ns and start-time seconds → ms are rounded to the nearest unit; bytes
///   are rounded to the nearest byte.
/// - A rejected series counts once in [`NodeBatch::rejected_series`] and is dropped as if its line were absent
///   (it creates no container and does not overwrite an earlier valid duplicate).
/// - Timestamps are optional integer ms; `container_start_time_seconds` uses its value, never its timestamp.
/// - Duplicate series: the last valid line wins. `resource_scrape_error` / `scrape_error` value 1 sets
///   [`NodeBatch::kubelet_error`]; 0 clears it for that family; any other value is a rejected series.
/// - OpenMetrics is not requested: `# EOF` is an ordinary comment, and OpenMetrics float-seconds timestamps fail
///   as malformed. Integer timestamps are always read as ms.
///
/// # Errors
/// [`Error::Malformed`] for the whole body when a line of a used family cannot be parsed (including a negative,
/// non-integer or overflowing timestamp, invalid UTF-8 in a used label value, or a duplicate
/// `container`/`namespace`/`pod` label). Malformed lines of unused families are ignored.
pub fn decode(body: &[u8], default_timestamp_ms: TimestampMs) -> Result<NodeBatch<'_>, Error> {
    let mut builder = Builder::new(body.len(), default_timestamp_ms);
    let mut rest = body;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        line_no += 1;
        let (mut line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        while let [b' ' | b'\t', tail @ ..] = line {
            line = tail;
        }
        // Cheap check before the parse: only names starting with these bytes can be used families.
        if !matches!(line.first(), Some(b'c' | b'n' | b'r' | b's')) {
            continue;
        }
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        builder.line(line).map_err(|reason| Error::Malformed {
            line: line_no,
            reason,
        })?;
    }
    Ok(builder.finish())
}

/// The families the decoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    NodeCpu,
    NodeMemory,
    NodeSwap,
    ContainerCpu,
    ContainerMemory,
    ContainerSwap,
    ContainerStart,
    ResourceScrapeError,
    ScrapeError,
}

impl Family {
    /// A family of per-container series (identified by `container`, `namespace` and `pod`).
    fn is_container(self) -> bool {
        matches!(
            self,
            Self::ContainerCpu | Self::ContainerMemory | Self::ContainerSwap | Self::ContainerStart
        )
    }

    /// Matches a used family name at the start of `line`, followed by `{`, a blank or the end of the line, and
    /// returns the text after the name. One or two byte checks pick the candidates, then one prefix compare.
    fn split_name(line: &[u8]) -> Option<(Self, &[u8])> {
        const CPU_TOTAL: &[u8] = b"container_cpu_usage_seconds_total";
        let candidates: &[(&[u8], Self)] =
            match (line.first()?, line.get(5)?, line.get(10)?, line.get(11)?) {
                (b'c', _, b'c', _) => &[
                    (CPU_TOTAL, Self::ContainerCpu),
                    (b"container_cpu_usage_seconds", Self::ContainerCpu),
                ],
                (b'c', _, b'm', _) => {
                    &[(b"container_memory_working_set_bytes", Self::ContainerMemory)]
                }
                (b'c', _, b's', b't') => &[(b"container_start_time_seconds", Self::ContainerStart)],
                (b'c', _, b's', b'w') => &[(b"container_swap_usage_bytes", Self::ContainerSwap)],
                (b'n', b'c', _, _) => &[
                    (b"node_cpu_usage_seconds_total", Self::NodeCpu),
                    (b"node_cpu_usage_seconds", Self::NodeCpu),
                ],
                (b'n', b'm', _, _) => &[(b"node_memory_working_set_bytes", Self::NodeMemory)],
                (b'n', b's', _, _) => &[(b"node_swap_usage_bytes", Self::NodeSwap)],
                (b'r', _, _, _) => &[(b"resource_scrape_error", Self::ResourceScrapeError)],
                (b's', _, _, _) => &[(b"scrape_error", Self::ScrapeError)],
                _ => return None,
            };
        candidates.iter().find_map(|&(name, family)| {
            let rest = line.strip_prefix(name)?;
            matches!(rest.first(), None | Some(b'{' | b' ' | b'\t')).then_some((family, rest))
        })
    }
}

/// A container identity as it appears in the body: raw (still escaped) label values, in the kubelet's own sort
/// order (`container`, `namespace`, `pod`). Escapes are canonical (only `\\`, `\"`, `\n` are accepted), so raw
/// equality is equality of the unescaped names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key<'a> {
    container: &'a [u8],
    namespace: &'a [u8],
    pod: &'a [u8],
}

/// The three label values that identify a container, as found on one line.
#[derive(Debug, Default, Clone, Copy)]
struct Labels<'a> {
    container: Option<&'a [u8]>,
    namespace: Option<&'a [u8]>,
    pod: Option<&'a [u8]>,
    /// One of the three values holds an escape (`\\`, `\"` or `\n`).
    escaped: bool,
}

impl<'a> Labels<'a> {
    /// The container key, or `None` when a label is absent or empty (Prometheus: empty means absent).
    fn key(&self) -> Option<Key<'a>> {
        match (self.container, self.namespace, self.pod) {
            (Some(c), Some(n), Some(p)) if !c.is_empty() && !n.is_empty() && !p.is_empty() => {
                Some(Key {
                    container: c,
                    namespace: n,
                    pod: p,
                })
            }
            _ => None,
        }
    }
}

/// One container being assembled; names are UTF-8-checked (still escaped) views into the body. `Copy`, and its key
/// is read from its names, so that entries stay small to push and to order.
#[derive(Clone, Copy)]
struct Entry<'a> {
    /// The label set of the line that created the entry, from after its `{` through its `}`: a later line with the
    /// same bytes there names the same container (see [`Builder::repeated_labels`]).
    label_text: &'a [u8],
    names: [&'a str; 3],
    /// A name holds an escape, so [`unescape`] has work to do.
    escaped: bool,
    cpu: Option<CpuSample>,
    memory: Option<GaugeSample>,
    swap: Option<GaugeSample>,
    start_time_ms: Option<TimestampMs>,
}

/// Accumulates one body's samples.
///
/// Containers live in `entries`. While the input arrives in the kubelet's order (each family sorted by
/// container, namespace, pod) `entries` stays sorted by [`Key`] and lookups are a cursor hit, an append, or a binary
/// search at the start of each family; the first key that would need an insertion in the middle switches to a
/// hash index, so any order stays linear.
struct Builder<'a> {
    default_timestamp_ms: TimestampMs,
    node: NodeSample,
    resource_scrape_error: bool,
    scrape_error: bool,
    rejected_series: u32,
    entries: Vec<Entry<'a>>,
    cursor: usize,
    index: Option<HashMap<Key<'a>, usize>>,
}

/// Upper bound for the up-front container capacity guess.
const MAX_INITIAL_CONTAINERS: usize = 4096;
/// Fewest body bytes per container expected, so that the up-front capacity is rarely outgrown: kind's body has
/// ≈ 500 B per container (with pod series and HELP lines), EKS's ≈ 700 B, and short names bring it down to ≈ 430 B
/// (the scale benchmark's bodies). Outgrowing it costs a reallocation and a copy of every entry so far.
const BYTES_PER_CONTAINER_GUESS: usize = 384;
/// `i64::MAX + 1` as an exact f64 (2^63): converted values must be strictly below it.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

impl<'a> Builder<'a> {
    fn new(body_len: usize, default_timestamp_ms: TimestampMs) -> Self {
        Self {
            default_timestamp_ms,
            node: NodeSample::default(),
            resource_scrape_error: false,
            scrape_error: false,
            rejected_series: 0,
            entries: Vec::with_capacity(
                (body_len / BYTES_PER_CONTAINER_GUESS + 4).min(MAX_INITIAL_CONTAINERS),
            ),
            cursor: 0,
            index: None,
        }
    }

    fn reject(&mut self) {
        self.rejected_series = self.rejected_series.saturating_add(1);
    }

    /// Handles one line (leading blanks and trailing `\r` already removed).
    fn line(&mut self, line: &'a [u8]) -> Result<(), &'static str> {
        let Some((family, rest)) = Family::split_name(line) else {
            return Ok(());
        };
        if family.is_container() {
            return self.container_line(family, rest);
        }
        // Node series carry no identifying labels; a label set is parsed for validity and ignored.
        let (_, _, rest) = parse_label_set(rest)?;
        let (v, ts) = parse_value_and_timestamp(rest)?;
        let ts = ts.unwrap_or(self.default_timestamp_ms);
        match family {
            Family::NodeCpu => match seconds_to_ns(v) {
                Some(ns) => {
                    self.node.cpu = Some(CpuSample {
                        cumulative_cpu_ns: ns,
                        timestamp_ms: ts,
                    })
                }
                None => self.reject(),
            },
            Family::NodeMemory => match whole_bytes(v) {
                Some(bytes) => {
                    self.node.memory = Some(GaugeSample {
                        bytes,
                        timestamp_ms: ts,
                    })
                }
                None => self.reject(),
            },
            Family::NodeSwap => match whole_bytes(v) {
                Some(bytes) => {
                    self.node.swap = Some(GaugeSample {
                        bytes,
                        timestamp_ms: ts,
                    })
                }
                None => self.reject(),
            },
            Family::ResourceScrapeError | Family::ScrapeError => {
                let flag = if v == 1.0 {
                    true
                } else if v == 0.0 {
                    false
                } else {
                    self.reject();
                    return Ok(());
                };
                if family == Family::ResourceScrapeError {
                    self.resource_scrape_error = flag;
                } else {
                    self.scrape_error = flag;
                }
            }
            Family::ContainerCpu
            | Family::ContainerMemory
            | Family::ContainerSwap
            | Family::ContainerStart => {}
        }
        Ok(())
    }

    /// Handles the text after the name of a container family's line.
    fn container_line(&mut self, family: Family, rest: &'a [u8]) -> Result<(), &'static str> {
        let (found, rest) = match self.repeated_labels(rest) {
            Some(rest) => (Found::Entry(self.cursor), rest),
            None => {
                let (labels, label_text, rest) = parse_label_set(rest)?;
                match labels.key() {
                    Some(key) => (Found::New(key, label_text, labels.escaped), rest),
                    None => (Found::Incomplete, rest),
                }
            }
        };
        let (v, ts) = parse_value_and_timestamp(rest)?;
        let ts = ts.unwrap_or(self.default_timestamp_ms);
        let gauge = |bytes| GaugeSample {
            bytes,
            timestamp_ms: ts,
        };
        let update = match family {
            Family::ContainerCpu => seconds_to_ns(v).map(|ns| {
                Update::Cpu(CpuSample {
                    cumulative_cpu_ns: ns,
                    timestamp_ms: ts,
                })
            }),
            Family::ContainerMemory => whole_bytes(v).map(|b| Update::Memory(gauge(b))),
            Family::ContainerSwap => whole_bytes(v).map(|b| Update::Swap(gauge(b))),
            Family::ContainerStart => seconds_to_ms(v).map(Update::Start),
            _ => None,
        };
        let (idx, update) = match (found, update) {
            (Found::Entry(idx), Some(update)) => (idx, update),
            (Found::New(key, label_text, escaped), Some(update)) => {
                (self.find_or_insert(key, label_text, escaped)?, update)
            }
            // A series without a full key or with an invalid value is counted and dropped.
            _ => {
                self.reject();
                return Ok(());
            }
        };
        self.cursor = idx + 1;
        let entry = &mut self.entries[idx];
        match update {
            Update::Cpu(cpu) => entry.cpu = Some(cpu),
            Update::Memory(memory) => entry.memory = Some(memory),
            Update::Swap(swap) => entry.swap = Some(swap),
            Update::Start(ms) => entry.start_time_ms = Some(ms),
        }
        Ok(())
    }

    /// The text after the label set when `rest` (the text after a container family's name) repeats, byte for
    /// byte, the label set of the entry at the cursor.
    ///
    /// The kubelet writes every family in the same container order with the same label text, so after the first
    /// family almost every line names the container at the cursor. Identical label text parses to the identical
    /// key, so one comparison replaces the label parse and the key comparison.
    fn repeated_labels(&self, rest: &'a [u8]) -> Option<&'a [u8]> {
        let entry = self.entries.get(self.cursor)?;
        rest.strip_prefix(b"{")?.strip_prefix(entry.label_text)
    }

    fn find_or_insert(
        &mut self,
        key: Key<'a>,
        label_text: &'a [u8],
        escaped: bool,
    ) -> Result<usize, &'static str> {
        if self
            .entries
            .get(self.cursor)
            .is_some_and(|e| e.key() == key)
        {
            return Ok(self.cursor);
        }
        let len = self.entries.len();
        if let Some(index) = &mut self.index {
            if let Some(&idx) = index.get(&key) {
                return Ok(idx);
            }
            self.entries.push(Entry::new(key, label_text, escaped)?);
            index.insert(key, len);
            return Ok(len);
        }
        if self.entries.last().is_none_or(|last| last.key() < key) {
            self.entries.push(Entry::new(key, label_text, escaped)?);
            return Ok(len);
        }
        if let Ok(idx) = self.entries.binary_search_by(|e| e.key().cmp(&key)) {
            return Ok(idx);
        }
        // Out of the kubelet's order: keep `entries` append-only from here on and index it.
        let entry = Entry::new(key, label_text, escaped)?;
        let mut index: HashMap<Key<'a>, usize> =
            HashMap::with_capacity_and_hasher(len.saturating_mul(2).max(16), Default::default());
        index.extend(self.entries.iter().enumerate().map(|(i, e)| (e.key(), i)));
        index.insert(key, len);
        self.entries.push(entry);
        self.index = Some(index);
        Ok(len)
    }

    fn finish(self) -> NodeBatch<'a> {
        let sample = |e: &Entry<'a>| {
            let name = |raw: &'a str| {
                if e.escaped {
                    unescape(raw)
                } else {
                    Cow::Borrowed(raw)
                }
            };
            ContainerSample {
                container: name(e.names[0]),
                namespace: name(e.names[1]),
                pod: name(e.names[2]),
                cpu: e.cpu,
                memory: e.memory,
                swap: e.swap,
                start_time_ms: e.start_time_ms,
            }
        };
        let order = |e: &Entry<'a>| (e.names[1], e.names[2], e.names[0]);
        // The kubelet's order is (container, namespace, pod): one sorted run per container name. The stable sorts
        // find and merge those runs instead of partitioning from scratch.
        let containers = if self.entries.iter().any(|e| e.escaped) {
            // Escapes change names, and so maybe their order: sort what they unescape to.
            let mut containers: Vec<ContainerSample<'a>> =
                self.entries.iter().map(sample).collect();
            containers.sort_by(|a, b| {
                (&*a.namespace, &*a.pod, &*a.container).cmp(&(
                    &*b.namespace,
                    &*b.pod,
                    &*b.container,
                ))
            });
            containers
        } else {
            // Raw names are the names: order positions (one word each), then build each sample once.
            let mut positions: Vec<usize> = (0..self.entries.len()).collect();
            positions.sort_by(|&a, &b| order(&self.entries[a]).cmp(&order(&self.entries[b])));
            positions
                .iter()
                .map(|&i| sample(&self.entries[i]))
                .collect()
        };
        NodeBatch {
            node: self.node,
            containers,
            kubelet_error: self.resource_scrape_error || self.scrape_error,
            rejected_series: self.rejected_series,
        }
    }
}

impl NodeBatch<'_> {
    /// The same batch owning its names (for keeping it beyond the body it was decoded from).
    pub fn into_owned(self) -> NodeBatch<'static> {
        NodeBatch {
            node: self.node,
            containers: self
                .containers
                .into_iter()
                .map(ContainerSample::into_owned)
                .collect(),
            kubelet_error: self.kubelet_error,
            rejected_series: self.rejected_series,
        }
    }
}

impl ContainerSample<'_> {
    /// The same sample owning its names.
    pub fn into_owned(self) -> ContainerSample<'static> {
        let own = |name: Cow<'_, str>| Cow::Owned(name.into_owned());
        ContainerSample {
            namespace: own(self.namespace),
            pod: own(self.pod),
            container: own(self.container),
            cpu: self.cpu,
            memory: self.memory,
            swap: self.swap,
            start_time_ms: self.start_time_ms,
        }
    }
}

impl<'a> Entry<'a> {
    /// The raw key: the names' bytes (UTF-8-checked, still escaped).
    fn key(&self) -> Key<'a> {
        let [container, namespace, pod] = self.names;
        Key {
            container: container.as_bytes(),
            namespace: namespace.as_bytes(),
            pod: pod.as_bytes(),
        }
    }

    /// Checks the names are UTF-8 once, when a container is first seen: one check of the whole label set (which
    /// holds the three values, split at ASCII quotes, so each is UTF-8 when the set is), or three of the values
    /// alone when another label's value is not UTF-8.
    fn new(key: Key<'a>, label_text: &'a [u8], escaped: bool) -> Result<Self, &'static str> {
        let utf8 = |raw: &'a [u8]| std::str::from_utf8(raw).map_err(|_| "label value is not UTF-8");
        let whole = std::str::from_utf8(label_text).ok();
        let name = |raw: &'a [u8]| match whole.and_then(|text| sub_str(text, raw)) {
            Some(name) => Ok(name),
            None => utf8(raw),
        };
        Ok(Self {
            label_text,
            names: [name(key.container)?, name(key.namespace)?, name(key.pod)?],
            escaped,
            cpu: None,
            memory: None,
            swap: None,
            start_time_ms: None,
        })
    }
}

/// `part` (a subslice of `text`'s bytes) as a `&str` of `text`; `None` when it is not within `text` or not on
/// character boundaries.
fn sub_str<'a>(text: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    text.get(start..start.checked_add(part.len())?)
}

/// The valid value of one container line.
enum Update {
    Cpu(CpuSample),
    Memory(GaugeSample),
    Swap(GaugeSample),
    Start(TimestampMs),
}

/// How a container line's label set was resolved.
enum Found<'a> {
    /// The same label text as the entry at this index.
    Entry(usize),
    /// A full key (with its label text and escape flag) still to be looked up.
    New(Key<'a>, &'a [u8], bool),
    /// A label of the key is absent or empty.
    Incomplete,
}

/// Resolves the (already validated) escapes `\\`, `\"`, `\n`; borrows when there are none.
fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_blanks(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&b| !is_blank(b)).unwrap_or(s.len());
    &s[n..]
}

/// Splits the next blank-delimited token off `s` (which starts at a non-blank byte).
fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&b| is_blank(b)).unwrap_or(s.len());
    s.split_at(end)
}

/// Parses the optional `{labels}` after a metric name: the identifying labels, the label set's text after `{`
/// through `}` (empty without one), and the text after it.
fn parse_label_set(rest: &[u8]) -> Result<(Labels<'_>, &[u8], &[u8]), &'static str> {
    match rest.split_first() {
        Some((b'{', inner)) => {
            let (labels, after) = parse_labels(inner)?;
            Ok((labels, &inner[..inner.len() - after.len()], after))
        }
        _ => Ok((Labels::default(), &rest[..0], rest)),
    }
}

/// Parses ` value [timestamp]` (the text after the label set).
fn parse_value_and_timestamp(rest: &[u8]) -> Result<(f64, Option<TimestampMs>), &'static str> {
    let rest = skip_blanks(rest);
    if rest.is_empty() {
        return Err("missing value");
    }
    // One pass over the usual plain decimal; any other token (or one the fast path declines) is cut at the next
    // blank and parsed in full.
    let (value, rest) = match fast_decimal_prefix(rest) {
        Some((value, len)) if rest.get(len).is_none_or(|&b| is_blank(b)) => (value, &rest[len..]),
        _ => {
            let (value, rest) = token(rest);
            (parse_go_float(value)?, rest)
        }
    };
    let rest = skip_blanks(rest);
    if rest.is_empty() {
        return Ok((value, None));
    }
    let (digits, ms) = leading_digits(rest);
    let ends = rest.get(digits).is_none_or(|&b| is_blank(b));
    let (timestamp_ms, rest) = match TimestampMs::try_from(ms) {
        // Up to 18 digits cannot overflow i64 (10^18 − 1 < i64::MAX).
        Ok(ms) if ends && (1..=18).contains(&digits) => (ms, &rest[digits..]),
        _ => {
            let (ts, rest) = token(rest);
            (parse_timestamp_ms(ts)?, rest)
        }
    };
    if !skip_blanks(rest).is_empty() {
        return Err("unexpected text after timestamp");
    }
    Ok((value, Some(timestamp_ms)))
}

/// Parses a label set after its `{`, returning the three identifying labels and the text after `}`.
fn parse_labels(s: &[u8]) -> Result<(Labels<'_>, &[u8]), &'static str> {
    let mut labels = Labels::default();
    let mut s = s;
    loop {
        s = skip_blanks(s);
        if let Some((b'}', rest)) = s.split_first() {
            return Ok((labels, rest));
        }
        let (which, rest) = label_start(s)?;
        let (value, escaped, rest) = label_value(rest)?;
        let slot = match which {
            Some(Identity::Container) => Some(&mut labels.container),
            Some(Identity::Namespace) => Some(&mut labels.namespace),
            Some(Identity::Pod) => Some(&mut labels.pod),
            None => None,
        };
        if let Some(slot) = slot {
            if slot.is_some() {
                return Err("duplicate label");
            }
            *slot = Some(value);
            labels.escaped |= escaped;
        }
        s = skip_blanks(rest);
        match s.split_first() {
            Some((b',', rest)) => s = rest,
            Some((b'}', rest)) => return Ok((labels, rest)),
            _ => return Err("expected ',' or '}' after label value"),
        }
    }
}

/// The labels that identify a container.
#[derive(Debug, Clone, Copy)]
enum Identity {
    Container,
    Namespace,
    Pod,
}

/// Reads `name="` at the start of a label: which identifying label it is (if any) and the text after the quote.
/// The kubelet's exact spelling is matched by prefix; anything else (blanks around `=`, other labels) by a scan.
fn label_start(s: &[u8]) -> Result<(Option<Identity>, &[u8]), &'static str> {
    if let Some(rest) = s.strip_prefix(b"container=\"") {
        return Ok((Some(Identity::Container), rest));
    }
    if let Some(rest) = s.strip_prefix(b"namespace=\"") {
        return Ok((Some(Identity::Namespace), rest));
    }
    if let Some(rest) = s.strip_prefix(b"pod=\"") {
        return Ok((Some(Identity::Pod), rest));
    }
    let name_len = s
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or(s.len());
    if name_len == 0 || s[0].is_ascii_digit() {
        return Err("invalid label name");
    }
    let (name, rest) = s.split_at(name_len);
    let rest = match skip_blanks(rest).split_first() {
        Some((b'=', rest)) => skip_blanks(rest),
        _ => return Err("expected '=' after label name"),
    };
    let rest = match rest.split_first() {
        Some((b'"', rest)) => rest,
        _ => return Err("expected '\"' to open label value"),
    };
    let which = match name {
        b"container" => Some(Identity::Container),
        b"namespace" => Some(Identity::Namespace),
        b"pod" => Some(Identity::Pod),
        _ => None,
    };
    Ok((which, rest))
}

/// Scans a label value after its opening quote: returns the raw (escaped) value, whether it holds an escape, and
/// the text after the closing quote.
fn label_value(s: &[u8]) -> Result<(&[u8], bool, &[u8]), &'static str> {
    let mut i = 0;
    loop {
        match memchr::memchr2(b'"', b'\\', &s[i..]) {
            None => return Err("unterminated label value"),
            Some(off) if s[i + off] == b'"' => {
                let end = i + off;
                return Ok((&s[..end], i > 0, &s[end + 1..]));
            }
            Some(off) => {
                let esc = i + off;
                match s.get(esc + 1) {
                    Some(b'\\' | b'"' | b'n') => i = esc + 2,
                    _ => return Err("invalid escape in label value"),
                }
            }
        }
    }
}

/// Parses a value as Go's `strconv.FormatFloat(v, 'g', -1, 64)` prints it (`10`, `4.710169`, `1.137475584e+09`,
/// `NaN`, `+Inf`, `-Inf`, `Inf`). Hexadecimal floats are not accepted (no kubelet prints them).
fn parse_go_float(tok: &[u8]) -> Result<f64, &'static str> {
    if let Some(v) = fast_decimal(tok) {
        return Ok(v);
    }
    std::str::from_utf8(tok)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or("invalid value")
}

/// Exact powers of ten representable in f64 (10^22 is the largest).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Clinger's fast path for unsigned decimals (`123`, `4.5`, `1.25e+07`): with a mantissa ≤ 2^53 and a power of ten
/// ≤ 10^22 both operands are exact, so one multiplication or division is correctly rounded, the same result as the
/// full parser. `None` sends anything else (signs, NaN/Inf, long mantissas, big exponents) to `str::parse`.
fn fast_decimal(tok: &[u8]) -> Option<f64> {
    fast_decimal_prefix(tok).and_then(|(value, len)| (len == tok.len()).then_some(value))
}

/// [`fast_decimal`] of the longest decimal at the start of `tok`: the value and the bytes it took. The caller checks
/// what follows (a value token must end there).
fn fast_decimal_prefix(tok: &[u8]) -> Option<(f64, usize)> {
    let (int_len, int_value) = leading_digits(tok);
    let (mut i, frac_len, frac_value) = match tok.get(int_len) {
        Some(b'.') => {
            let (len, value) = leading_digits(&tok[int_len + 1..]);
            (int_len + 1 + len, len, value)
        }
        _ => (int_len, 0, 0),
    };
    let digits = int_len + frac_len;
    // At most 19 digits: the mantissa stays below 10^19 < 2^64.
    if digits == 0 || digits > 19 {
        return None;
    }
    let frac_len = u32::try_from(frac_len).ok()?;
    let mantissa = int_value
        .checked_mul(10_u64.checked_pow(frac_len)?)?
        .checked_add(frac_value)?;
    let mut exp10 = -i32::try_from(frac_len).ok()?;
    if let Some(b'e' | b'E') = tok.get(i) {
        i += 1;
        let negative = match tok.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let (len, e) = leading_digits(&tok[i..]);
        if len == 0 || len > 3 {
            return None;
        }
        // At most 3 digits: below 1,000.
        let e = i32::try_from(e).ok()?;
        exp10 += if negative { -e } else { e };
        i += len;
    }
    if mantissa > 1 << 53 {
        return None;
    }
    // mantissa ≤ 2^53: the conversion is exact.
    let m = mantissa as f64;
    let pow = POW10.get(usize::try_from(exp10.unsigned_abs()).ok()?)?;
    Some((if exp10 >= 0 { m * pow } else { m / pow }, i))
}

/// The run of ASCII digits at the start of `s`: its length, and its value (meaningful for up to 19 digits; longer
/// runs wrap). Eight digits at a time while they last.
fn leading_digits(s: &[u8]) -> (usize, u64) {
    let mut len = 0;
    let mut value: u64 = 0;
    while let Some(chunk) = s
        .get(len..len + 8)
        .and_then(|c| <[u8; 8]>::try_from(c).ok())
    {
        let Some(eight) = eight_digits(chunk) else {
            break;
        };
        value = value.wrapping_mul(100_000_000).wrapping_add(eight);
        len += 8;
    }
    while let Some(&b) = s.get(len).filter(|b| b.is_ascii_digit()) {
        value = value.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        len += 1;
    }
    (len, value)
}

/// The value of eight ASCII digits (first digit most significant), or `None` when one byte is not a digit.
///
/// One word at a time: a byte is a digit exactly when neither `b − 0x30` borrows nor `b + 0x46` reaches 0x80, so
/// no byte of an all-digit word carries into another; the digits are then paired, pairs into fours, fours into
/// eight (the classic multiply-and-shift combination).
fn eight_digits(chunk: [u8; 8]) -> Option<u64> {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let word = u64::from_le_bytes(chunk);
    let below = word.wrapping_sub(0x3030_3030_3030_3030);
    let above = word.wrapping_add(0x4646_4646_4646_4646);
    if (below | above) & HIGH_BITS != 0 {
        return None;
    }
    let pairs = ((word & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(10 * 256 + 1)) >> 8;
    let fours = ((pairs & 0x00FF_00FF_00FF_00FF).wrapping_mul(100 * 65_536 + 1)) >> 16;
    Some(((fours & 0x0000_FFFF_0000_FFFF).wrapping_mul(10_000 * (1 << 32) + 1)) >> 32)
}

/// Parses an integer millisecond timestamp; negative, signed, fractional or overflowing ones are malformed.
fn parse_timestamp_ms(tok: &[u8]) -> Result<TimestampMs, &'static str> {
    if tok.first() == Some(&b'-') {
        return Err("negative timestamp");
    }
    if !tok.iter().all(u8::is_ascii_digit) {
        return Err("timestamp is not an integer number of milliseconds");
    }
    // Up to 18 digits cannot overflow i64 (10^18 − 1 < i64::MAX); longer ones are checked digit by digit.
    let (head, tail) = tok.split_at(tok.len().min(18));
    let ms = head
        .iter()
        .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
    tail.iter().try_fold(ms, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(d - b'0')))
            .ok_or("timestamp out of range")
    })
}

/// A finite, non-negative `x` rounded to an integer strictly below 2^63; `None` otherwise.
fn to_unit(x: f64, scale: f64) -> Option<u64> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let scaled = x * scale;
    if scaled < I64_LIMIT {
        Some(round_half_away(scaled))
    } else {
        None
    }
}

/// `x.round()` as an integer, for `x` in [0, 2^63), without a call to libm's `round` (one per sample).
///
/// The cast truncates exactly (`x` is in range). Below 2^53 the integer part converts back exactly, so the
/// fraction is exact; from 2^52 up every `f64` is an integer, so the fraction is 0 and nothing is added.
fn round_half_away(x: f64) -> u64 {
    // In range by the caller's check: the cast truncates toward zero, never saturates.
    let whole = x as u64;
    // Exact below 2^53 (see above); above it `whole` is `x` itself.
    let fraction = x - whole as f64;
    whole + u64::from(fraction >= 0.5)
}

/// CPU seconds (float) → nanoseconds, rounded.
fn seconds_to_ns(seconds: f64) -> Option<u64> {
    to_unit(seconds, 1e9)
}

/// Bytes (float with an integer value) → bytes, rounded.
fn whole_bytes(bytes: f64) -> Option<u64> {
    to_unit(bytes, 1.0)
}

/// Unix seconds (float) → ms since the epoch, rounded.
fn seconds_to_ms(seconds: f64) -> Option<TimestampMs> {
    to_unit(seconds, 1e3).and_then(|ms| TimestampMs::try_from(ms).ok())
}

#[cfg(test)]
mod tests;
