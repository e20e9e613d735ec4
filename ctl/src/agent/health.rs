//! `/healthz`, `/readyz`, `/status` and `/metrics` over plain HTTP/1.1: the kubelet's
//! probes and people. One request per connection.

use super::AgentStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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

use exposition::TEXT;

/// (status code, content type, body) for a path.
pub fn route(path: &str, st: &AgentStatus) -> (u16, &'static str, String) {
    if path == "/metrics" {
        return match super::metrics::render(st) {
            Ok(text) => (200, exposition::CONTENT_TYPE, text),
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
    let (method, path) = exposition::read_request(&mut conn).await?;
    let (code, kind, body) = if method != "GET" {
        (405, TEXT, "only GET\n".to_owned())
    } else {
        match status.lock() {
            Ok(st) => route(&path, &st),
            Err(_) => (500, TEXT, "status poisoned\n".to_owned()),
        }
    };
    exposition::respond(conn, code, kind, &body).await
}
