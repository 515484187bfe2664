//! In a cluster: whether this node serves an object, and if another node
//! does, the request proxied there (`cluster::Forwarder`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::Response;

use super::{ApiError, Gateway, credentials};
use crate::cluster::{Cluster, ClusterError, Hops, Pin, Route};
use crate::object::ObjectAddr;

/// Where a request for an object goes.
pub(super) enum Owner {
    /// Serve it here, holding the pin until the request is handled.
    Here(Request, Pin),
    /// The owner's response.
    There(Response),
}

/// Serves object `name` of `class` here when this node owns it (taking it
/// when nobody does), else forwards `request` to its owner; a forward
/// that cannot reach the owner reads the owner again and, for a request
/// without a body (which can be sent again) that never reached it (the
/// connection failed), retries once.
pub(super) async fn route(
    gateway: &Gateway,
    cluster: &Cluster,
    class: &str,
    name: &str,
    request: Request,
) -> Result<Owner, ApiError> {
    let object = ObjectAddr::new(class, name);
    // A stopping node's object is handed over first: pinned now, it could
    // not be released.
    cluster.wait_handed_over(class, object.id()).await;
    let pin = cluster.pin(class, object.id());
    let hops = Hops::of(request.headers());
    let client_address = credentials::client_address(
        request.headers(),
        request.extensions(),
        &gateway.runtime().config().trusted_proxies,
    );
    let mut again = resendable(&request);
    let mut request = request;
    loop {
        let (node, address) = match cluster.route(class, object.id(), &hops).await? {
            Route::Local { restore } => {
                if restore {
                    cluster
                        .restore_moved(gateway.runtime(), class, name)
                        .await?;
                }
                return Ok(Owner::Here(request, pin));
            }
            Route::Remote { node, address } => (node, address),
        };
        let copy = again.take().map(|copy| copy.build());
        let sent = cluster
            .forwarder()
            .forward(&address, &node, cluster.node(), client_address, request)
            .await;
        match sent {
            Ok(response) => return Ok(Owner::There(response)),
            Err(error @ ClusterError::OwnerUnreachable { sent, .. }) => {
                cluster.forget_owner(class, object.id());
                tracing::warn!(%error, "forwarding to an object's owner failed");
                // A request the owner may have run is not run twice.
                match copy {
                    Some(copy) if !sent => request = copy,
                    _ => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// What is needed to send a body-less request again.
struct Resend {
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
}

impl Resend {
    fn build(&self) -> Request {
        let mut request = Request::new(Body::empty());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// A copy of a request that has no body and no upgrade, else `None`.
fn resendable(request: &Request) -> Option<Resend> {
    let headers = request.headers();
    let empty = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|length| length.as_bytes() == b"0");
    (empty && !headers.contains_key(header::UPGRADE)).then(|| Resend {
        method: request.method().clone(),
        uri: request.uri().clone(),
        headers: headers.clone(),
    })
}
