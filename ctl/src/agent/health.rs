//! `/healthz`, `/readyz`, `/status` and `/metrics` over plain HTTP/1.1: the kubelet's
//! probes and people. One request per connection.

use super::AgentStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The main loop must have turned within this long to be alive.
pub const STALL: Duration = Duration::from_secs(30);

pub async fn serve(listener: TcpListener, status: Arc<Mutex<AgentStatus>>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let st = status.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(conn, st)).await;
        });
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// (status code, content type, body) for a path.
pub fn route(path: &str, st: &AgentStatus) -> (u16, &'static str, String) {
    if path == "/metrics" {
        return match super::metrics::render(st) {
            Ok(text) => (200, super::metrics::CONTENT_TYPE, text),
            Err(_) => (500, TEXT, "metrics could not be written\n".into()),
        };
    }
    let (code, body) = match path {
        "/healthz" => {
            if st.heartbeat.elapsed() < STALL {
                (200, "ok\n".into())
            } else {
                (503, "main loop stalled\n".into())
            }
        }
        "/readyz" => match st.not_ready() {
            None => (200, "ok\n".into()),
            Some(why) => (503, format!("{why}\n")),
        },
        "/status" => (
            200,
            serde_json::to_string_pretty(&st.report()).unwrap_or_default() + "\n",
        ),
        _ => (404, "not found\n".into()),
    };
    (code, TEXT, body)
}

async fn answer(mut conn: TcpStream, status: Arc<Mutex<AgentStatus>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, kind, body) = if method != "GET" {
        (405, TEXT, "only GET\n".to_owned())
    } else {
        let path = path.split('?').next().unwrap_or("");
        match status.lock() {
            Ok(st) => route(path, &st),
            Err(_) => (500, TEXT, "status poisoned\n".to_owned()),
        }
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}
