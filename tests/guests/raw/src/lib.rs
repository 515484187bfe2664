//! A test class written against the raw bindings, without the SDK's
//! `Response` (whose `HeaderMap` would refuse what this class must send):
//! it answers whatever status, headers and body the query asks for, so the
//! host's checks of a guest's response can be tested.
//!
//! `GET /respond?status=S&headers=N&body=B&set=name:value...`: status S
//! (200 by default), N headers `x-h{i}: vvv` (`value=V` bytes each, 1 by
//! default), B bytes of body, plus each `set` header as given.
//!
//! On a socket, `send:N` sends N bytes back (and `refused:<error>` if the
//! host refuses), `publish:N` publishes N bytes to every socket and
//! answers `published:<count>`, `flood:N:K` publishes K messages of N
//! bytes.

use podhost_sdk::bindings::exports::podhost::object::handler::Guest;
use podhost_sdk::bindings::podhost::object::broadcast;
use podhost_sdk::bindings::podhost::object::types::{
    Message, Request, Response, Socket, SocketAccept,
};

struct Raw;

impl Guest for Raw {
    fn fetch(request: Request) -> Result<Response, Response> {
        let query = request
            .path_with_query
            .split_once('?')
            .map_or("", |(_, query)| query);
        let mut response = Response {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        };
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let value_bytes = pairs
            .iter()
            .find(|(key, _)| *key == "value")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(1);
        for (key, value) in pairs {
            match key {
                "status" => response.status = value.parse().unwrap_or(200),
                "headers" => {
                    let count: usize = value.parse().unwrap_or(0);
                    response
                        .headers
                        .extend((0..count).map(|i| (format!("x-h{i}"), vec![b'v'; value_bytes])));
                }
                "body" => response.body = vec![b'x'; value.parse().unwrap_or(0)],
                "set" => {
                    if let Some((name, value)) = value.split_once(':') {
                        response
                            .headers
                            .push((name.to_string(), value.as_bytes().to_vec()));
                    }
                }
                _ => {}
            }
        }
        Ok(response)
    }

    fn alarm(_retry_count: u32) -> Result<(), String> {
        Ok(())
    }

    fn socket_open(_socket: Socket, _request: Request) -> Result<SocketAccept, Response> {
        Ok(SocketAccept {
            tags: vec!["all".to_string()],
        })
    }

    fn socket_message(socket: Socket, message: Message) -> Result<(), String> {
        let Message::Text(text) = message else {
            return Ok(());
        };
        let bytes = |n: &str| "x".repeat(n.parse().unwrap_or(0));
        if let Some(n) = text.strip_prefix("send:") {
            if let Err(error) = broadcast::send(socket, &Message::Text(bytes(n))) {
                let reply = Message::Text(format!("refused:{error:?}"));
                broadcast::send(socket, &reply).map_err(|e| format!("{e:?}"))?;
            }
        } else if let Some(n) = text.strip_prefix("publish:") {
            let reached = broadcast::publish("all", &Message::Text(bytes(n)));
            let reply = Message::Text(format!("published:{reached}"));
            broadcast::send(socket, &reply).map_err(|e| format!("{e:?}"))?;
        } else if let Some((n, k)) = text
            .strip_prefix("flood:")
            .and_then(|rest| rest.split_once(':'))
        {
            let message = Message::Text(bytes(n));
            for _ in 0..k.parse().unwrap_or(0) {
                broadcast::publish("all", &message);
            }
        }
        Ok(())
    }

    fn socket_close(
        _socket: Socket,
        _code: u16,
        _reason: String,
        _attachment: Vec<u8>,
    ) -> Result<(), String> {
        Ok(())
    }

    fn migrations() -> Vec<String> {
        Vec::new()
    }
}

podhost_sdk::bindings::export!(Raw with_types_in podhost_sdk::bindings);
