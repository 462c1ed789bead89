//! Stand-in for `src/auth.rs` in fuzz builds: only [`Attributes`], which `Api::attributes` returns, without the
//! authenticators (rustls, x509-parser, kube). Same shape as the seam type; must not hold logic.

/// Same shape as `crate::auth::Attributes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attributes {
    Resource {
        verb: String,
        group: String,
        version: String,
        resource: String,
        namespace: Option<String>,
        name: Option<String>,
    },
    NonResource {
        verb: String,
        path: String,
    },
}
