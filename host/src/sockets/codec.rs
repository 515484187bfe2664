//! How tungstenite frames a socket's messages: its settings, and what a
//! connection keeps between messages.
//!
//! tungstenite 0.29 kept, for a connection's life, a read buffer as large
//! as the largest message the connection ever received and a write buffer
//! as large as the largest frame it ever sent: a client could make every
//! socket it opens hold `max_message_bytes`, and a large publish left a
//! copy in every subscriber. podhost builds a vendored tungstenite with a
//! change to its frame codec that gives both back once the message has
//! passed (`vendor/tungstenite/PODHOST.md`); the test below holds it to
//! that.

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::CODEC_READ_BYTES;

/// The codec's settings for a server socket whose messages may be up to
/// `max_message_bytes`, each way.
pub fn config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        // Small reads: `SharedReads` under the codec batches them.
        .read_buffer_size(CODEC_READ_BYTES)
        // Each frame goes to the connection when it is sent; the writer
        // batches nothing, so the codec has nothing to hold.
        .write_buffer_size(0)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;
    use crate::sockets::SharedReads;
    use crate::test_alloc::live;

    const LARGE: usize = 1 << 20;

    /// The client, on a thread of its own so its allocations are not
    /// counted: sends a small then a large message, reads what the server
    /// sends back the same way, then closes.
    fn client(io: tokio::io::DuplexStream) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut ws = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
                for size in [10, LARGE] {
                    ws.send(Message::Binary(vec![1; size].into()))
                        .await
                        .expect("sent");
                    let back = ws.next().await.expect("a message").expect("read");
                    assert_eq!(back.len(), size);
                }
                ws.close(None).await.expect("closed");
                while ws.next().await.is_some() {}
            });
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_keeps_no_buffer_as_large_as_its_largest_message() {
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let client = client(client_io);
        let mut server = WebSocketStream::from_raw_socket(
            SharedReads::new(server_io),
            Role::Server,
            Some(config(2 * LARGE)),
        )
        .await;
        // A small message each way first: what every connection keeps
        // (and the thread's scratch buffer) is allocated by then.
        let small = server.next().await.expect("a message").expect("read");
        server.send(small).await.expect("sent");
        let idle = live();

        let large = server.next().await.expect("a message").expect("read");
        assert_eq!(large.len(), LARGE);
        drop(large);
        let after_reading = live() - idle;
        server
            .send(Message::Binary(vec![2; LARGE].into()))
            .await
            .expect("sent");
        let after_writing = live() - idle;

        // The duplex pipe's buffer (16 KiB each way) may grow on this
        // thread; a kept message would be 1 MiB.
        let bound = 128 * 1024;
        assert!(
            after_reading < bound,
            "{after_reading} bytes kept after reading a {LARGE}-byte message"
        );
        assert!(
            after_writing < bound,
            "{after_writing} bytes kept after sending a {LARGE}-byte message"
        );
        while server.next().await.is_some() {}
        // The client reads until the connection ends.
        drop(server);
        client.join().expect("the client ran");
    }
}
