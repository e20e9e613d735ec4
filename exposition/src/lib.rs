//! What vswitchd's `/metrics` and the node agent's share: metric families
//! written from plain values (a scrape reads counters the switch or the
//! agent keeps anyway, so every metric is a constant of the moment), and
//! the one-request HTTP/1.1 exchange their small servers speak.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fmt::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The content type of OpenMetrics text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of everything else these servers say.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A series' labels: names and values, values as they are (escaped here).
pub type Labels = Vec<(&'static str, String)>;

/// One family: its series by label set; nothing when it has none.
pub fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), Error> {
    let mut series = series.into_iter().peekable();
    let Some((_, first)) = series.peek() else {
        return Ok(());
    };
    let kind = first.metric_type();
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in series {
        if labels.is_empty() {
            v.encode(m)?;
            return Ok(());
        }
        // the encoder writes label values as they are
        let labels: Labels = labels.into_iter().map(|(k, v)| (k, escape(&v))).collect();
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family of one series without labels.
pub fn one<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: M,
) -> Result<(), Error> {
    family(enc, name, help, [(Vec::new(), v)])
}

/// A label value as the exposition format quotes it.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

pub fn gauge(v: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Reads a request's head (up to 8 KiB); its method and path, the query
/// cut off.
pub async fn read_request(conn: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let path = words.next().unwrap_or("");
    let path = path.split('?').next().unwrap_or("").to_owned();
    Ok((method, path))
}

/// Answers and closes the connection.
pub async fn respond(
    mut conn: TcpStream,
    code: u16,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
            family(
                &mut e,
                "t_rx",
                "Received.",
                [(vec![("pod", "a\"b\\c\nd".to_owned())], counter(3))],
            )?;
            family(
                &mut e,
                "t_none",
                "Empty.",
                Vec::<(Labels, ConstCounter<u64>)>::new(),
            )?;
            one(&mut e, "t_up", "Up.", gauge(u64::MAX))
        }
    }

    #[test]
    fn families_escape_labels_and_skip_empty_ones() {
        let mut reg = Registry::default();
        reg.register_collector(Box::new(Two));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encodes");
        assert!(
            out.contains("t_rx_total{pod=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{out}"
        );
        assert!(!out.contains("t_none"), "{out}");
        assert!(out.contains(&format!("t_up {}\n", i64::MAX)), "{out}");
    }

    #[tokio::test]
    async fn one_request_one_answer() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.expect("accept");
            let (m, p) = read_request(&mut c).await.expect("request");
            respond(c, 404, TEXT, &format!("{m} {p}\n"))
                .await
                .expect("answer");
        });
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .expect("send");
        let mut got = String::new();
        c.read_to_string(&mut got).await.expect("read");
        server.await.expect("server");
        assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nGET /x\n"), "{got}");
    }
}
