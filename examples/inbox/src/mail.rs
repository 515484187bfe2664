//! A raw RFC 5322 message into what an inbox keeps, with `mail-parser`.

use mail_parser::{Address, MessageParser};
use podhost_sdk::{Error, Result};

/// Longest subject kept, in characters (the rest is cut).
const MAX_SUBJECT_CHARS: usize = 998;

/// What an inbox keeps of a message.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The first `From` address (`""` if it has none).
    pub from: String,
    /// Every `To` address.
    pub to: Vec<String>,
    pub subject: String,
    /// The first text body part (HTML-only mail: its text rendering).
    pub text: String,
    pub message_id: Option<String>,
}

/// Parses `raw`; a 400 if it is not a message at all (no header).
pub fn parse(raw: &[u8]) -> Result<Parsed> {
    let message = MessageParser::default()
        .parse(raw)
        .filter(|message| !message.headers().is_empty())
        .ok_or_else(|| Error::bad_request("the body is not an RFC 5322 message"))?;
    let from = message
        .from()
        .and_then(Address::first)
        .and_then(|addr| addr.address.as_deref())
        .unwrap_or_default()
        .to_string();
    let to = message
        .to()
        .map(|to| {
            to.iter()
                .filter_map(|addr| addr.address.as_deref().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let subject = message
        .subject()
        .unwrap_or_default()
        .chars()
        .take(MAX_SUBJECT_CHARS)
        .collect();
    let text = message
        .body_text(0)
        .map(|text| text.into_owned())
        .unwrap_or_default();
    Ok(Parsed {
        from,
        to,
        subject,
        text,
        message_id: message.message_id().map(str::to_string),
    })
}
