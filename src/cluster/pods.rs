//! The Running-pod metadata watch: a metadata-only watcher on Pods in all namespaces with the field selector
//! `status.phase=Running` (what metrics-server's metadata informer uses), trimmed to namespace, name and labels and
//! fed into the [`Index`]. No pod spec or status is ever fetched or kept. This module must not scrape.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};

use super::{Index, Labels};
use crate::shutdown;

/// The server-side filter: only Running pods are listed and served (metrics-server's rule).
pub const RUNNING_FIELD_SELECTOR: &str = "status.phase=Running";

/// Trims pod metadata to `(namespace, name, labels)`; `None` for an object without namespace or name.
pub fn trim_pod(meta: &PartialObjectMeta<Pod>) -> Option<(String, String, Labels)> {
    let namespace = meta.metadata.namespace.clone()?;
    let name = meta.metadata.name.clone()?;
    Some((
        namespace,
        name,
        meta.metadata
            .labels
            .as_ref()
            .map(Labels::from)
            .unwrap_or_default(),
    ))
}

/// Watches Running pods' metadata until `shutdown`, keeping `index` up to date and marking pods synced after each
/// full list. A pod leaving `Running` arrives as a delete (the field selector no longer matches it).
///
/// Watch errors are logged and retried with kube's default backoff; they never end the watch.
pub async fn watch(client: kube::Client, index: Arc<Index>, shutdown: shutdown::Signal) {
    // `Api<PartialObjectMeta<_>>` makes kube send metadata-only list/watch requests.
    let api = kube::Api::<PartialObjectMeta<Pod>>::all(client);
    let config = watcher::Config::default().fields(RUNNING_FIELD_SELECTOR);
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut relist = Vec::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        match event {
            None => return,
            Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
            Some(Ok(watcher::Event::Init)) => relist.clear(),
            Some(Ok(watcher::Event::InitApply(meta))) => relist.extend(trim_pod(&meta)),
            Some(Ok(watcher::Event::InitDone)) => {
                tracing::debug!(pods = relist.len(), "pod list complete");
                index.replace_pods(std::mem::take(&mut relist));
            }
            Some(Ok(watcher::Event::Apply(meta))) => {
                if let Some((namespace, name, labels)) = trim_pod(&meta) {
                    index.apply_pod(&namespace, &name, labels);
                }
            }
            Some(Ok(watcher::Event::Delete(meta))) => {
                if let (Some(namespace), Some(name)) =
                    (&meta.metadata.namespace, &meta.metadata.name)
                {
                    index.delete_pod(namespace, name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
