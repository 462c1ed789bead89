//! A pod's containers' usage as the API reads it: a range of a source's [`ContainerTable`], so that a
//! [`super::PodUsage`] refers to where the source keeps its containers instead of copying them on every read.
//!
//! The metrics source implements the table (storage: a node's state); the API only reads rows by index. This
//! module must not know how a source stores its points.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::{ContainerUsage, Usage};

/// Containers' usage kept by a metrics source, read by position.
pub trait ContainerTable: Send + Sync + 'static {
    /// The container at `index`: its name and usage.
    fn container(&self, index: usize) -> Option<ContainerView<'_>>;
}

/// One container's name and usage, borrowed from a [`ContainerTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerView<'a> {
    /// Container name.
    pub name: &'a Arc<str>,
    /// The usage over the pod's window.
    pub usage: Usage,
}

/// A pod's containers, sorted by name: rows `range` of `table`. Cloning it clones one `Arc`; it keeps the table
/// alive (for storage, the node state it was read from) until dropped.
#[derive(Clone)]
pub struct Containers {
    table: Arc<dyn ContainerTable>,
    range: Range<usize>,
}

// === impl Containers ===

impl Containers {
    /// Rows `range` of `table`.
    pub fn new(table: Arc<dyn ContainerTable>, range: Range<usize>) -> Containers {
        Containers { table, range }
    }

    /// Number of containers.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether there is no container.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The `index`-th container (in name order).
    pub fn get(&self, index: usize) -> Option<ContainerView<'_>> {
        if index >= self.len() {
            return None;
        }
        self.table.container(self.range.start.checked_add(index)?)
    }

    /// The containers in name order.
    pub fn iter(&self) -> impl Iterator<Item = ContainerView<'_>> {
        self.range.clone().filter_map(|i| self.table.container(i))
    }
}

impl From<Vec<ContainerUsage>> for Containers {
    /// Containers owned by the pod itself (test doubles and sources without a shared table).
    fn from(containers: Vec<ContainerUsage>) -> Containers {
        let range = 0..containers.len();
        Containers::new(Arc::new(containers), range)
    }
}

impl PartialEq for Containers {
    fn eq(&self, other: &Containers) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|(a, b)| a.name == b.name && a.usage == b.usage)
    }
}

impl Eq for Containers {}

impl fmt::Debug for Containers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl ContainerTable for Vec<ContainerUsage> {
    fn container(&self, index: usize) -> Option<ContainerView<'_>> {
        self.get(index).map(|c| ContainerView {
            name: &c.name,
            usage: c.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, cpu_nanocores: u64) -> ContainerUsage {
        ContainerUsage {
            name: name.into(),
            usage: Usage {
                cpu_nanocores,
                memory_bytes: 1 << 20,
                swap_bytes: None,
            },
        }
    }

    fn names(containers: &Containers) -> Vec<String> {
        containers.iter().map(|c| c.name.to_string()).collect()
    }

    #[test]
    fn containers_are_read_by_position_within_their_range() {
        let table = Arc::new(vec![row("a", 1), row("b", 2), row("c", 3), row("d", 4)]);
        let middle = Containers::new(table, 1..3);
        assert_eq!(middle.len(), 2);
        assert_eq!(names(&middle), ["b", "c"]);
        assert_eq!(middle.get(1).map(|c| c.usage.cpu_nanocores), Some(3));
        assert_eq!(
            middle.get(2),
            None,
            "the next pod's container is not this pod's"
        );
        assert!(Containers::from(Vec::new()).is_empty());
    }

    #[test]
    fn equality_compares_names_and_usage_not_where_they_are_kept() {
        let shared = Containers::new(Arc::new(vec![row("x", 9), row("a", 1), row("b", 2)]), 1..3);
        let owned = Containers::from(vec![row("a", 1), row("b", 2)]);
        assert_eq!(shared, owned);
        assert_ne!(owned, Containers::from(vec![row("a", 1), row("b", 3)]));
        assert_ne!(owned, Containers::from(vec![row("a", 1)]));
        assert_eq!(format!("{owned:?}").matches("name").count(), 2);
    }
}
