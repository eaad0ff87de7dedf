//! A real `redis-server` for the tests and benchmarks of the fleet
//! limits: on a free loopback port, without persistence, stopped when its
//! guard is dropped — and, should the test binary die without unwinding,
//! by a watchdog that outlives it by a fraction of a second.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `redis-server`, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

/// The Debian package that provides `redis-server`.
const PACKAGE: &str = "redis-server";

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it
    /// answers `PING`. Panics, naming the package to install, if there is
    /// no `redis-server`.
    pub fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = Self { port, child: None };
        server.restart();
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, for `redis::Client::open`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to be gone: Redis is
    /// down, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is
    /// saved), and waits until it answers `PING`.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start redis-server ({error}): install the Debian package `{PACKAGE}`"
                )
            });
        watch(child.id());
        self.child = Some(child);
        for _ in 0..500 {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// Sends one command in Redis's inline form and returns the raw reply
    /// (for `INFO`, `CLIENT PAUSE`, `FLUSHALL` and the like).
    pub fn command(&self, command: &str) -> String {
        send(self.port, command)
    }

    /// How many times Redis ran `command` (from `INFO commandstats`), e.g.
    /// `evalsha`.
    pub fn calls_of(&self, command: &str) -> u64 {
        calls_of(self.port, command)
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How many times the Redis on `port` ran `command` (from `INFO
/// commandstats`).
pub fn calls_of(port: u16, command: &str) -> u64 {
    let stats = send(port, "INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// Sends `command` to the Redis on `port` in the inline form and returns
/// the raw reply.
pub fn send(port: u16, command: &str) -> String {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connected");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .expect("sent");
    let mut reply = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer).unwrap_or(0);
        reply.extend_from_slice(&buffer[..read]);
        if read == 0 || complete(&reply) {
            break;
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// Whether a reply is complete: a simple line, or a bulk string whose
/// announced length has arrived.
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    match reply.first() {
        Some(b'$') => {
            let length: i64 = std::str::from_utf8(&reply[1..end])
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            length < 0 || reply.len() >= end + 2 + length as usize + 2
        }
        _ => true,
    }
}

/// Kills the server `pid` once this process is gone, checking five times
/// a second: a test binary that aborts leaves no server behind.
fn watch(pid: u32) {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.2; done; kill -9 {pid} 2>/dev/null"
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
