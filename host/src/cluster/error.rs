//! Why a node does not serve an object; answered as 503 with the gateway's
//! error shape, so clients retry (through any node).

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "node {node} has no lease in etcd (it lost contact); it serves no objects until it has one again: retry through another node"
    )]
    NoLease { node: String },
    #[error("node {node} does not own this object and does not forward a forwarded request: retry")]
    NotOwner { node: String },
    #[error("etcd cannot be reached: {0}")]
    Etcd(String),
    #[error("this object's owner is about to change: {0}; retry in a few seconds")]
    Moving(String),
    /// Nobody owns the object and this node, stopping, takes nothing: a
    /// client's request goes to another node (`Cluster::route`).
    #[error("node {node} is stopping and takes no object: retry through another node")]
    Stopping { node: String },
    /// An object-to-object call, alarm or socket event for an object
    /// another node runs: not run here (see `Runtime::deliver`).
    #[error(
        "this object runs on node {owner}, not on node {node}; calls between objects are not forwarded across nodes: retry through the gateway"
    )]
    OwnedElsewhere { node: String, owner: String },
    /// `sent`: the request may have reached the owner (the connection
    /// failed after it was made), so it must not be sent again.
    #[error("the object's owner {node} cannot be reached: {reason}")]
    OwnerUnreachable {
        node: String,
        reason: String,
        sent: bool,
    },
}

impl ClusterError {
    /// The error's `code` in the gateway's error shape.
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::NotOwner { .. } | ClusterError::OwnedElsewhere { .. } => "not_owner",
            ClusterError::NoLease { .. }
            | ClusterError::Etcd(_)
            | ClusterError::Moving(_)
            | ClusterError::Stopping { .. } => "cluster_unavailable",
            ClusterError::OwnerUnreachable { .. } => "owner_unreachable",
        }
    }
}

impl From<etcd_client::Error> for ClusterError {
    fn from(error: etcd_client::Error) -> Self {
        ClusterError::Etcd(error.to_string())
    }
}
