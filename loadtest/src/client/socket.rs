//! WebSockets to the servers (call control's `/ws`, the SFU's `/rtc`), opened from a chosen source address.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{lookup_host, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async_with_config, WebSocketStream};

/// One JSON-over-WebSocket connection.
pub struct Socket {
    ws: WebSocketStream<TcpStream>,
}

/// Why a socket could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The URL is not `ws://host:port/path`.
    #[error("bad URL {0:?}")]
    Url(String),
    /// TCP failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// The server refused the upgrade, or the socket failed.
    #[error("websocket: {0}")]
    Ws(String),
    /// The server closed the socket.
    #[error("closed by the server")]
    Closed,
}

impl Socket {
    /// Connects to `url` (plain `ws://` only: the harness runs next to the servers), from `source` if given.
    pub async fn connect(url: &str, source: Option<IpAddr>) -> Result<Socket, SocketError> {
        let uri: Uri = url.parse().map_err(|_| SocketError::Url(url.to_string()))?;
        if uri.scheme_str() != Some("ws") {
            return Err(SocketError::Url(format!("{url} (only ws:// is supported)")));
        }
        let host = uri.host().ok_or_else(|| SocketError::Url(url.to_string()))?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = lookup_host((host.trim_matches(['[', ']']), port))
            .await?
            .next()
            .ok_or_else(|| SocketError::Url(url.to_string()))?;
        let tcp = tcp_from(addr, source).await?;
        // Small buffers: tungstenite zeroes its whole read buffer each time a read finds nothing, and a device
        // polls its sockets at every wake-up (the 128 KiB default cost a third of the harness's CPU).
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(1 << 20));
        let (ws, _) = client_async_with_config(url, tcp, Some(config))
            .await
            .map_err(|e| SocketError::Ws(refusal(e)))?;
        Ok(Socket { ws })
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, v: &Value) -> Result<(), SocketError> {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .map_err(|e| SocketError::Ws(e.to_string()))
    }

    /// The next JSON message; pings are answered by the library, and non-JSON frames skipped.
    pub async fn recv(&mut self) -> Result<Value, SocketError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str(t.as_str()) {
                        return Ok(v);
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Err(SocketError::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(SocketError::Ws(e.to_string())),
            }
        }
    }

    /// Closes the socket politely (errors do not matter any more).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

async fn tcp_from(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, std::io::Error> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A refused upgrade's status and body, which name the reason (`401 ... token expired`).
fn refusal(e: tokio_tungstenite::tungstenite::Error) -> String {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            let body = r.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            format!("{} {}", r.status(), body.unwrap_or_default())
        }
        e => e.to_string(),
    }
}
