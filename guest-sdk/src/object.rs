//! The `Object` trait and the glue between it and the `handler` export.

use std::any::Any;
use std::cell::RefCell;

use crate::bindings::podhost::object::types;
use crate::sockets::{Accept, Closed, Message, Socket};
use crate::{Error, Request, Response, Result, StatusCode};

/// An object class.
///
/// The host keeps one instance of the type per active object and hands it
/// events one at a time. The instance lives until the object hibernates or
/// an event traps; the database outlives it.
pub trait Object: Sized + 'static {
    /// SQL migrations, oldest first. Before the object's first event after
    /// it opens its database, the host runs the ones this object has not
    /// had yet, in one transaction; a failing one leaves the data as it
    /// was and is retried at the next activation. Only ever append.
    const MIGRATIONS: &'static [&'static str] = &[];

    /// Builds the instance when the object activates: on its first event,
    /// and again after it woke from hibernation or recovered from a trap.
    /// Runs inside that first event's transaction, so it is the place for
    /// `CREATE TABLE IF NOT EXISTS`.
    fn activate() -> Result<Self>;

    /// Handles an HTTP request addressed to this object.
    fn fetch(&mut self, request: Request) -> Result<Response>;

    /// The object's alarm fired (see [`alarms`](crate::alarms) and
    /// [`schedule`](crate::schedule)). It was cleared just before; setting
    /// it again here schedules the next one. `Err` rolls back and the host
    /// retries later with backoff; `retry_count` is 0 on the first try.
    fn alarm(&mut self, retry_count: u32) -> Result<()> {
        let _ = retry_count;
        eprintln!("an alarm fired, but this class does not handle alarms");
        Ok(())
    }

    /// A client asks to open a WebSocket (see [`sockets`](crate::sockets)).
    /// `Ok` accepts it with its tags; `Err` refuses it with that error's
    /// status. By default sockets are refused.
    fn socket_open(&mut self, socket: Socket, request: Request) -> Result<Accept> {
        let _ = (socket, request);
        Err(Error::new(
            StatusCode::NOT_FOUND,
            "this object does not take WebSockets",
        ))
    }

    /// A message arrived on one of the object's sockets. `Err` rolls the
    /// event back (nothing it sent leaves); the socket stays open.
    fn socket_message(&mut self, socket: Socket, message: Message) -> Result<()> {
        let _ = (socket, message);
        Ok(())
    }

    /// A client closed its socket, or its connection was lost. The socket
    /// is no longer in [`sockets::sockets`](crate::sockets::sockets);
    /// `closed` carries its last attachment.
    fn socket_close(&mut self, closed: Closed) -> Result<()> {
        let _ = closed;
        Ok(())
    }
}

/// Exports a type implementing [`Object`] as the component's class.
#[macro_export]
macro_rules! export {
    ($object:ty) => {
        const _: () = {
            struct Exported;

            impl $crate::bindings::exports::podhost::object::handler::Guest for Exported {
                fn fetch(
                    request: $crate::bindings::podhost::object::types::Request,
                ) -> ::core::result::Result<
                    $crate::bindings::podhost::object::types::Response,
                    $crate::bindings::podhost::object::types::Response,
                > {
                    $crate::__private::dispatch_fetch::<$object>(request)
                }

                fn alarm(retry_count: u32) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::dispatch_alarm::<$object>(retry_count)
                }

                fn socket_open(
                    socket: u64,
                    request: $crate::bindings::podhost::object::types::Request,
                ) -> ::core::result::Result<
                    $crate::bindings::podhost::object::types::SocketAccept,
                    $crate::bindings::podhost::object::types::Response,
                > {
                    $crate::__private::dispatch_socket_open::<$object>(socket, request)
                }

                fn socket_message(
                    socket: u64,
                    message: $crate::bindings::podhost::object::types::Message,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::dispatch_socket_message::<$object>(socket, message)
                }

                fn socket_close(
                    socket: u64,
                    code: u16,
                    reason: ::std::string::String,
                    attachment: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::dispatch_socket_close::<$object>(
                        socket, code, reason, attachment,
                    )
                }

                fn migrations() -> ::std::vec::Vec<::std::string::String> {
                    <$object as $crate::Object>::MIGRATIONS
                        .iter()
                        .map(|migration| ::std::string::ToString::to_string(migration))
                        .collect()
                }
            }

    $crate::bindings::export!(Exported with_types_in $crate::bindings);
        };
    };
}

thread_local! {
    /// The instance of the exported class; a component runs one class on one
    /// thread, so this holds at most one value of one type.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `f` on the instance, activating it first if needed.
fn with_instance<O: Object, T>(f: impl FnOnce(&mut O) -> Result<T>) -> Result<T> {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Box::new(O::activate()?));
        }
        let object = slot
            .as_mut()
            .and_then(|o| o.downcast_mut::<O>())
            .ok_or_else(|| Error::internal("the exported object has another type"))?;
        f(object)
    })
}

/// Runs an event without a response on the instance; the error's message
/// goes to the log and back to the host.
fn run_logged<O: Object>(
    what: &str,
    f: impl FnOnce(&mut O) -> Result<()>,
) -> std::result::Result<(), String> {
    with_instance::<O, _>(f).map_err(|error| {
        eprintln!("{what} failed: {error}");
        error.message().to_string()
    })
}

/// The response for a failed request, logged if it is the object's fault.
fn error_response(error: Error) -> types::Response {
    if error.status().is_server_error() {
        eprintln!("event failed: {error}");
    }
    error.into_response().into_wit()
}

/// Runs `alarm` on the instance.
pub fn dispatch_alarm<O: Object>(retry_count: u32) -> std::result::Result<(), String> {
    run_logged::<O>("alarm", |object| object.alarm(retry_count))
}

/// Runs `fetch` on the instance.
pub fn dispatch_fetch<O: Object>(
    request: types::Request,
) -> std::result::Result<types::Response, types::Response> {
    Request::from_wit(request)
        .and_then(|request| with_instance::<O, _>(|object| object.fetch(request)))
        .map(Response::into_wit)
        .map_err(error_response)
}

/// Runs `socket_open` on the instance.
pub fn dispatch_socket_open<O: Object>(
    socket: u64,
    request: types::Request,
) -> std::result::Result<types::SocketAccept, types::Response> {
    Request::from_wit(request)
        .and_then(|request| {
            with_instance::<O, _>(|object| object.socket_open(Socket(socket), request))
        })
        .map(Accept::into_wit)
        .map_err(error_response)
}

/// Runs `socket_message` on the instance.
pub fn dispatch_socket_message<O: Object>(
    socket: u64,
    message: types::Message,
) -> std::result::Result<(), String> {
    let message = Message::from_wit(message);
    run_logged::<O>("socket message", |object| {
        object.socket_message(Socket(socket), message)
    })
}

/// Runs `socket_close` on the instance.
pub fn dispatch_socket_close<O: Object>(
    socket: u64,
    code: u16,
    reason: String,
    attachment: Vec<u8>,
) -> std::result::Result<(), String> {
    let closed = Closed {
        socket: Socket(socket),
        code,
        reason,
        attachment,
    };
    run_logged::<O>("socket close", |object| object.socket_close(closed))
}
