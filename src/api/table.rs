//! `meta.k8s.io` `Table` responses for `kubectl get nodemetrics` / `podmetrics`.
//!
//! Columns are metrics-server's: `Name`, one column per usage key (`cpu`, `memory`, and `swap` when a returned
//! object reports it), then `Window`. **BETTER** than metrics-server: the columns are emitted even for an empty
//! list. Pod rows sum their containers. Rows embed a `PartialObjectMetadata` by default (`includeObject`).
//! This module must not decide which objects are returned.

use super::negotiate::MetaVersion;
use super::quantity;
use super::render::write_str;
use super::route::IncludeObject;
use super::types::{
    MetricsObject, RenderContext, write_object, write_object_metadata, write_type_meta,
};

/// What a cell shows for swap when the object has no swap figure (other objects in the table do).
const NO_SWAP: &str = "<unknown>";

/// Renders `items` as a Table in `meta.k8s.io/<version>`.
pub(crate) fn render_table<T: MetricsObject>(
    ctx: &RenderContext,
    meta: MetaVersion,
    include: IncludeObject,
    items: &[T],
) -> Vec<u8> {
    let with_swap = items
        .iter()
        .any(|item| item.total_usage().swap_bytes.is_some());
    // About 300 bytes per row with a PartialObjectMetadata (a realloc of a large body costs a copy).
    let mut buf = Vec::with_capacity(512 + items.len() * 320);
    buf.push(b'{');
    let meta_api_version = meta.api_version();
    write_type_meta(&mut buf, "Table", meta_api_version);
    buf.extend_from_slice(b"\"metadata\":{},\"columnDefinitions\":[");
    buf.extend_from_slice(
        br#"{"name":"Name","type":"string","format":"name","description":"Name of the resource","priority":0}"#,
    );
    let usage_columns: &[&str] = if with_swap {
        &["cpu", "memory", "swap"]
    } else {
        &["cpu", "memory"]
    };
    for column in usage_columns {
        buf.extend_from_slice(b",{\"name\":\"");
        buf.extend_from_slice(column.as_bytes());
        buf.extend_from_slice(
            br#"","type":"string","format":"quantity","description":"","priority":0}"#,
        );
    }
    buf.extend_from_slice(
        br#",{"name":"Window","type":"string","format":"duration","description":"","priority":0}"#,
    );
    buf.extend_from_slice(b"],\"rows\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_row(&mut buf, ctx, meta_api_version, include, with_swap, item);
    }
    buf.extend_from_slice(b"]}");
    buf
}

fn write_row<T: MetricsObject>(
    buf: &mut Vec<u8>,
    ctx: &RenderContext,
    meta_api_version: &str,
    include: IncludeObject,
    with_swap: bool,
    item: &T,
) {
    let usage = item.total_usage();
    buf.extend_from_slice(b"{\"cells\":[");
    write_str(buf, item.name());
    buf.extend_from_slice(b",\"");
    quantity::write_cpu_nanocores(buf, usage.cpu_nanocores);
    buf.extend_from_slice(b"\",\"");
    quantity::write_bytes(buf, usage.memory_bytes);
    buf.extend_from_slice(b"\",\"");
    if with_swap {
        match usage.swap_bytes {
            Some(swap) => quantity::write_bytes(buf, swap),
            None => buf.extend_from_slice(NO_SWAP.as_bytes()),
        }
        buf.extend_from_slice(b"\",\"");
    }
    quantity::write_duration_ms(buf, item.window_ms());
    buf.extend_from_slice(b"\"]");
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            buf.extend_from_slice(b",\"object\":{");
            write_type_meta(buf, "PartialObjectMetadata", meta_api_version);
            write_object_metadata(buf, ctx, item);
            buf.push(b'}');
        }
        IncludeObject::Object => {
            buf.extend_from_slice(b",\"object\":");
            write_object(buf, ctx, item, true);
        }
    }
    buf.push(b'}');
}
