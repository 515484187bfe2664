//! The `Object` trait and the glue between it and the `handler` export.

use std::any::Any;
use std::cell::RefCell;

use crate::bindings::podhost::object::types;
use crate::{Error, Request, Response, Result};

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

/// Runs `alarm` on the instance.
pub fn dispatch_alarm<O: Object>(retry_count: u32) -> std::result::Result<(), String> {
    with_instance::<O, _>(|object| object.alarm(retry_count)).map_err(|error| {
        eprintln!("alarm failed: {error}");
        error.message().to_string()
    })
}

/// Runs `fetch` on the instance.
pub fn dispatch_fetch<O: Object>(
    request: types::Request,
) -> std::result::Result<types::Response, types::Response> {
    let outcome = Request::from_wit(request)
        .and_then(|request| with_instance::<O, _>(|object| object.fetch(request)));
    match outcome {
        Ok(response) => Ok(response.into_wit()),
        Err(error) => {
            if error.status().is_server_error() {
                eprintln!("event failed: {error}");
            }
            Err(error.into_response().into_wit())
        }
    }
}
