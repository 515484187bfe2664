//! What an object is asked to do, and how that can fail.

use tokio::sync::{mpsc, oneshot};

use super::admin::AdminRequest;
use crate::bindings::podhost::object::types::Message as SocketMessage;
use crate::bindings::{Request, Response};
use crate::capabilities::events::Backlog;
use crate::capabilities::objects::CallChain;
use crate::limits::LimitExceeded;
use crate::sockets::LoggedEvent;
use crate::storage::MigrationFailed;

/// One unit of work for an object.
pub(crate) enum Event {
    Fetch {
        request: Request,
        reply: oneshot::Sender<Result<Response, EventError>>,
    },
    /// A request from another object (`objects.call`): run as a fetch,
    /// with the chain of calls that led to it. It runs on the caller's turn
    /// of its class's share (the caller only waits), so a chain never waits
    /// for turns its own callers hold.
    Call {
        request: Request,
        chain: CallChain,
        reply: oneshot::Sender<Result<Response, EventError>>,
    },
    /// Something happened on one of the object's WebSockets.
    Socket {
        socket: u64,
        happened: SocketEvent,
        reply: oneshot::Sender<Result<SocketOutcome, EventError>>,
    },
    /// An SSE client subscribes, having seen the events up to `after` if
    /// it says so: the reply is what it missed, and from then on the
    /// subscriber gets each committed event.
    Subscribe {
        after: Option<u64>,
        subscriber: mpsc::Sender<LoggedEvent>,
        reply: oneshot::Sender<Result<Backlog, EventError>>,
    },
    /// The object's alarm is due (by the catalog's index): run its
    /// handler if it really is, on attempt `retries + 1`. The reply says
    /// it was handled, rescheduled or dropped.
    Alarm {
        retries: u32,
        reply: oneshot::Sender<()>,
    },
    /// Hibernate now if nothing else is waiting: the host needs room for
    /// other objects.
    Hibernate,
    /// Drop the instance but keep the database open: the host needs room
    /// for other objects' instances (`max_active`).
    DropInstance,
    /// The operator's look at, or replacement of, the object's data:
    /// runs between batches, without an instance.
    Admin(AdminRequest),
    /// Close and remove the object's database for good.
    Delete {
        reply: oneshot::Sender<Result<bool, EventError>>,
    },
}

pub(crate) enum SocketEvent {
    /// A client asks to open the socket (already registered in the hub).
    Open(Request),
    Message(SocketMessage),
    Close {
        code: u16,
        reason: String,
        attachment: Vec<u8>,
    },
}

/// What a socket event came to.
#[derive(Debug)]
pub(crate) enum SocketOutcome {
    Accepted,
    /// The object refused the socket with this response.
    Refused(Response),
    /// A message or close, handled (or failed in the guest: the socket
    /// stays either way).
    Handled,
}

/// Why an event produced no response from the object.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("no class named {0:?} is deployed")]
    NoSuchClass(String),
    #[error("the object failed while handling the request; its changes were rolled back")]
    Trapped,
    #[error(transparent)]
    LimitExceeded(LimitExceeded),
    #[error("the object's database could not be migrated: {0}")]
    Migration(MigrationFailed),
    #[error(
        "the request's writes leave a deferred FOREIGN KEY constraint unsatisfied; they were rolled back"
    )]
    DeferredConstraint,
    #[error("the object's files could not be removed")]
    DeleteFailed,
    #[error(
        "the object was deleted, but its API keys and handles could not be removed; delete it again"
    )]
    ReferencesRemain,
    #[error("the object could not be activated")]
    Activation,
    #[error("the object's event log could not be read")]
    EventLog,
    #[error("the object's changes could not be saved; they were rolled back")]
    Commit,
    /// A `replicated` commit's segment was not durable in the store in
    /// time. The commit is kept on this node's disk and shipped when the
    /// store returns, but it is not acknowledged: after the loss of the
    /// disk it may or may not be there.
    #[error(
        "the replication store did not confirm the write in time; it was not acknowledged and may or may not be kept"
    )]
    ReplicationUnavailable,
    #[error("too many objects are active on this server; retry later")]
    TooManyActive,
    #[error("the object has too many requests waiting; retry later")]
    Overloaded,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A new object would take its class's tenant past a quota.
    #[error(transparent)]
    QuotaExceeded(crate::tenants::QuotaExceeded),
    /// In a cluster: the object is not this node's to run (another owns
    /// it, or ownership cannot be known now).
    #[error(transparent)]
    Cluster(crate::cluster::ClusterError),
}
