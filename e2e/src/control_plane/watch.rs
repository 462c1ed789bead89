//! Watch streams: newline-delimited JSON events (`ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK`) from the model's
//! change feed, resuming from a resource version through the model's history, honouring label/field selectors
//! (an object that stops matching is sent as `DELETED`, one that starts matching as `ADDED`), `timeoutSeconds`,
//! `allowWatchBookmarks` and `sendInitialEvents`, in full or metadata-only form.
//!
//! It must not hold the model lock while streaming: it works from snapshots and the broadcast receiver.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::negotiate::ObjectFormat;
use super::objects;
use super::{Filter, Kind, Query, Shared, kind_names, query_value, select, status_response};
use crate::https::{Body, BoxError};
use crate::model::{Change, ModelError, Object};

/// Watch length when the client gives no `timeoutSeconds` (kube-apiserver picks 30–60 min; shorter keeps tests
/// from pinning connections).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Bookmark interval when bookmarks are allowed (kube-apiserver sends them about once a minute).
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

struct WatchState {
    shared: Arc<Shared>,
    kind: Kind,
    filter: Filter,
    format: ObjectFormat,
    pending: VecDeque<Bytes>,
    past: VecDeque<Change>,
    receiver: Option<broadcast::Receiver<Change>>,
    deadline: Instant,
    bookmarks: bool,
    next_bookmark: Instant,
    last_rv: u64,
}

/// Starts a watch response.
pub(crate) fn serve(
    shared: Arc<Shared>,
    kind: Kind,
    filter: Filter,
    format: ObjectFormat,
    query: &Query,
) -> Response<Body> {
    let timeout = query_value(query, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let bookmarks = query_value(query, "allowWatchBookmarks") == Some("true");
    let send_initial = query_value(query, "sendInitialEvents") == Some("true");
    let requested_rv = query_value(query, "resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v != 0);

    let mut pending = VecDeque::new();
    // Without a resource version (or with sendInitialEvents) the watch starts with the current state as ADDED.
    let start_rv = match requested_rv {
        Some(rv) if !send_initial => rv,
        _ => {
            let super::Selection { rv, items, .. } =
                select(&shared, kind, &filter, super::Page::ALL);
            for item in items {
                pending.push_back(event_line("ADDED", &render(&item, format)));
            }
            if send_initial {
                pending.push_back(bookmark_line(kind, format, rv, true));
            }
            rv
        }
    };
    let (past, receiver) = if kind == Kind::ConfigMap {
        (Vec::new(), None)
    } else {
        match shared.model.watch_from(start_rv) {
            Ok((past, receiver)) => (past, Some(receiver)),
            Err(ModelError::Gone(rv)) => {
                return status_response(
                    StatusCode::GONE,
                    "Expired",
                    &format!("too old resource version: {rv}"),
                    None,
                );
            }
            Err(other) => {
                return status_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    &other.to_string(),
                    None,
                );
            }
        }
    };
    let now = Instant::now();
    let state = WatchState {
        shared,
        kind,
        filter,
        format,
        pending,
        past: past.into(),
        receiver,
        deadline: now + timeout,
        bookmarks,
        next_bookmark: now + BOOKMARK_EVERY,
        last_rv: start_rv,
    };
    let body = StreamBody::new(stream::unfold(state, next_frame)).boxed();
    let mut response = Response::new(body);
    let content_type = match format {
        ObjectFormat::Metadata(_) => "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        _ => "application/json",
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

async fn next_frame(mut state: WatchState) -> Option<(Result<Frame<Bytes>, BoxError>, WatchState)> {
    loop {
        if let Some(line) = state.pending.pop_front() {
            return Some((Ok(Frame::data(line)), state));
        }
        if let Some(change) = state.past.pop_front() {
            state.queue(&change);
            continue;
        }
        let now = Instant::now();
        if now >= state.deadline {
            return None;
        }
        if state.bookmarks && now >= state.next_bookmark {
            state.next_bookmark = now + BOOKMARK_EVERY;
            let line = bookmark_line(
                state.kind,
                state.format,
                state.last_rv.max(state.shared.model.resource_version()),
                false,
            );
            return Some((Ok(Frame::data(line)), state));
        }
        let wake = if state.bookmarks {
            state.deadline.min(state.next_bookmark)
        } else {
            state.deadline
        };
        let Some(receiver) = state.receiver.as_mut() else {
            tokio::time::sleep_until(wake).await;
            continue;
        };
        match tokio::time::timeout_at(wake, receiver.recv()).await {
            Err(_) => continue,
            Ok(Ok(change)) => state.queue(&change),
            // A lagging watcher is closed; the client relists (as after any watch end).
            Ok(Err(_)) => return None,
        }
    }
}

impl WatchState {
    fn matches(&self, object: &Object) -> Option<Value> {
        match (self.kind, object) {
            (Kind::Node, Object::Node(n)) if self.filter.node(n) => Some(objects::node_json(n)),
            (Kind::Pod, Object::Pod(p)) if self.filter.pod(p) => Some(objects::pod_json(p)),
            _ => None,
        }
    }

    fn queue(&mut self, change: &Change) {
        self.last_rv = change.resource_version;
        let old = change.old.as_ref().and_then(|o| self.matches(o));
        let new = change.new.as_ref().and_then(|o| self.matches(o));
        let (kind, mut object) = match (old, new) {
            (None, Some(new)) => ("ADDED", new),
            (Some(_), Some(new)) => ("MODIFIED", new),
            (Some(old), None) => (
                "DELETED",
                change.new.as_ref().and_then(full_json).unwrap_or(old),
            ),
            (None, None) => return,
        };
        object["metadata"]["resourceVersion"] = json!(change.resource_version.to_string());
        self.pending
            .push_back(event_line(kind, &render(&object, self.format)));
    }
}

fn full_json(object: &Object) -> Option<Value> {
    match object {
        Object::Node(n) => Some(objects::node_json(n)),
        Object::Pod(p) => Some(objects::pod_json(p)),
    }
}

fn render(object: &Value, format: ObjectFormat) -> Value {
    match format {
        ObjectFormat::Metadata(v) => objects::metadata_only(object, v),
        _ => object.clone(),
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_line(kind: Kind, format: ObjectFormat, rv: u64, initial_events_end: bool) -> Bytes {
    let (kind_name, _) = kind_names(kind);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = match format {
        ObjectFormat::Metadata(v) => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{v}"), "metadata": metadata})
        }
        _ => json!({"kind": kind_name, "apiVersion": "v1", "metadata": metadata}),
    };
    event_line("BOOKMARK", &object)
}
