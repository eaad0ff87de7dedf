//! Loopback plumbing shared by the integration tests: a real hyper server
//! for the registry service, and a raw HTTP/1.1 client.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis_registry::RegistryService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower::Service;

/// Serves `service` on 127.0.0.1 with hyper, one task per connection.
pub async fn serve(service: RegistryService) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, service, http1::Builder::new())
}

/// Serves `service` on a listener whose sockets have a small send buffer,
/// and with hyper's smallest write buffer, so that a client that stops
/// reading is felt soon.
pub async fn serve_tight(service: RegistryService) -> SocketAddr {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let mut builder = http1::Builder::new();
    builder.max_buf_size(8192).writev(false);
    serve_on(listener, service, builder)
}

fn serve_on(
    listener: TcpListener,
    service: RegistryService,
    builder: http1::Builder,
) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let mut service = service.clone();
                    service.call(request)
                });
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Sends one request (with `connection: close`) and reads the whole reply.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, &[], b"").await
}

/// Parses a whole HTTP/1.1 response, with a content-length or chunked body.
pub fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: HashMap<String, String> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let rest = &raw[split + 4..];
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// Decodes as much of a chunked body as is complete.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 || raw.len() < end + 2 + size + 2 {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
    out
}

/// An open `GET /events` stream read as server-sent events.
pub struct Sse {
    stream: TcpStream,
    buffer: Vec<u8>,
    text: String,
    pub status: u16,
    /// The response's headers, names in lowercase.
    pub headers: HashMap<String, String>,
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

impl Sse {
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        Self::connect_with(TcpStream::connect(addr).await.unwrap(), path, headers).await
    }

    pub async fn connect_with(stream: TcpStream, path: &str, headers: &[(&str, &str)]) -> Sse {
        Self::try_connect_with(stream, path, headers)
            .await
            .unwrap_or_else(|reply| panic!("not an event stream: {reply:?}"))
    }

    /// Opens `GET path`: the event stream, or the whole reply when it is
    /// not one.
    pub async fn try_connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Sse, Reply> {
        Self::try_connect_with(TcpStream::connect(addr).await.unwrap(), path, headers).await
    }

    pub async fn try_connect_with(
        mut stream: TcpStream,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Sse, Reply> {
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\nconnection: close\r\n"
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let split = loop {
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream closed before its head");
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(split) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break split;
            }
        };
        let head = String::from_utf8(buffer[..split].to_vec()).unwrap();
        if !head
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream")
        {
            stream.read_to_end(&mut buffer).await.unwrap();
            return Err(parse(&buffer));
        }
        let Reply {
            status, headers, ..
        } = parse(&buffer[..split + 4]);
        let buffer = buffer[split + 4..].to_vec();
        Ok(Sse {
            stream,
            buffer,
            text: String::new(),
            status,
            headers,
        })
    }

    /// The next event (skipping comments and the `retry:` preamble), or
    /// `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            self.decode();
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".to_owned(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.parse().unwrap());
                        any = true;
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        event.event = name.to_owned();
                        any = true;
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data.push_str(data);
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let mut chunk = [0; 8192];
            let n = self.stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Moves the complete chunks of the buffer into the text.
    fn decode(&mut self) {
        loop {
            let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buffer[..end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                self.buffer.clear();
                return;
            }
            if self.buffer.len() < end + 2 + size + 2 {
                return;
            }
            self.text
                .push_str(std::str::from_utf8(&self.buffer[end + 2..end + 2 + size]).unwrap());
            self.buffer.drain(..end + 2 + size + 2);
        }
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}
