//! A table's change events: `{"table", "op", "row"}` as event
//! `table:<name>` to the event stream and to the object's sockets.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Record, Table};
use crate::{StorageErrorCode, events, sockets};

/// Publishes a change; the host releases it once the event commits.
pub(super) fn announce<T: Serialize + DeserializeOwned>(
    table: &Table<T>,
    op: &str,
    record: &Record<T>,
) -> crate::Result<()> {
    let topic = table.topic();
    let mut text = json!({ "table": table.name, "op": op, "row": record }).to_string();
    if let Err(error) = events::publish(&topic, &text) {
        if error.code != StorageErrorCode::TooBig {
            return Err(error.into());
        }
        // A row too large for an event: subscribers learn which row
        // changed and read it themselves.
        text = json!({
            "table": table.name,
            "op": op,
            "row": { "id": record.id, "created_at": record.created_at, "updated_at": record.updated_at },
            "truncated": true,
        })
        .to_string();
        events::publish(&topic, &text)?;
    }
    if table.all_sockets {
        for info in sockets::sockets(None) {
            // A socket that closed meanwhile misses nothing it could read.
            let _ = info.socket.send(text.as_str());
        }
    } else {
        sockets::publish(&topic, text);
    }
    Ok(())
}
