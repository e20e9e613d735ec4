//! A real Prometheus (Debian's) scraping targets for a test, and PromQL
//! instant queries against it.

use crate::{free_port, Bg};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// A running Prometheus; stopped when dropped.
pub struct Prometheus {
    /// Its HTTP address.
    pub addr: String,
    bg: Option<Bg>,
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` over HTTP/1.0 (so the server closes the connection and sends
/// no chunks): the body, or None.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_owned())
}

impl Prometheus {
    /// Starts Prometheus in `dir` scraping each `(job, address)` every
    /// second, and waits until every job is up.
    pub fn start(dir: &Path, jobs: &[(&str, &str)]) -> Prometheus {
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = dir.join("prometheus.yml");
        let mut yml = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        for (job, target) in jobs {
            yml.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{targets: ['{target}']}}]\n"
            ));
        }
        std::fs::write(&cfg, yml).expect("writing prometheus.yml");
        let tsdb = dir.join("tsdb");
        let bg = Bg::spawn(
            None,
            &[
                "prometheus",
                &format!("--config.file={}", cfg.display()),
                &format!("--storage.tsdb.path={}", tsdb.display()),
                &format!("--web.listen-address={addr}"),
            ],
        );
        let mut p = Prometheus { addr, bg: Some(bg) };
        let end = std::time::Instant::now() + Duration::from_secs(60);
        for (job, _) in jobs {
            while p.one(&format!("up{{job=\"{job}\"}}")) != Some(1.0) {
                if std::time::Instant::now() > end {
                    let targets = get(&p.addr, "/api/v1/targets").unwrap_or_default();
                    let out = p.bg.take().map(Bg::stop);
                    let err = out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
                    let err = err.unwrap_or_default();
                    let tail: Vec<&str> = err.lines().rev().take(15).collect();
                    panic!(
                        "Prometheus does not scrape {job}: targets {targets}; it said:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        p
    }

    /// The values of an instant PromQL query's series (empty when it has none).
    pub fn query(&self, q: &str) -> Vec<f64> {
        let Some(body) = get(
            &self.addr,
            &format!("/api/v1/query?query={}", percent_encode(q)),
        ) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of a query with exactly one series.
    pub fn one(&self, q: &str) -> Option<f64> {
        match self.query(q).as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(bg) = self.bg.take() {
            bg.stop();
        }
    }
}
