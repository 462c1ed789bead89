//! In-memory index of nodes and Running pods fed by the watches (or by tests); implements `ClusterView`.

/// The cluster index (to be written).
#[derive(Debug, Default)]
pub struct Index {}
