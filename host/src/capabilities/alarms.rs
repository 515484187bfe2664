//! `podhost:object/alarms`: the object's one alarm, kept in its own
//! database (see `crate::alarms`, where the rest of alarms lives).

use crate::alarms::{read_alarm, write_alarm};
use crate::bindings::StorageError;
use crate::bindings::podhost::object::alarms::Host;
use crate::capabilities::ObjectState;

impl Host for ObjectState {
    fn set(&mut self, at_ms: u64) -> Result<(), StorageError> {
        let at = i64::try_from(at_ms).unwrap_or(i64::MAX);
        self.transaction()?
            .host_write(|conn| write_alarm(conn, Some(at)))?;
        self.alarm_changed = true;
        Ok(())
    }

    fn get(&mut self) -> Result<Option<u64>, StorageError> {
        Ok(read_alarm(self.transaction()?.host())?.map(i64::unsigned_abs))
    }

    fn cancel(&mut self) -> Result<bool, StorageError> {
        let db = self.transaction()?;
        let was_set = read_alarm(db.host())?.is_some();
        db.host_write(|conn| write_alarm(conn, None))?;
        self.alarm_changed = true;
        Ok(was_set)
    }
}
