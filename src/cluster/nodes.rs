//! cluster nodes (to be written).
