//! cluster pods (to be written).
