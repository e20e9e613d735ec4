//! `vsctl flows log`: the records of packets that matched a policy rule with
//! action Log, as a table or as JSON lines, once or following new records.

use crate::cli::FlowLogArgs;
use crate::{render, reply_kind, Error};
use api::{Client, FlowLogEntry, Reply, Request};
use std::io::{self, Write};
use std::time::Duration;

/// How often `--follow` asks for new records.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

fn fetch(client: &mut Client, after: u64) -> Result<Vec<FlowLogEntry>, Error> {
    match client.call(&Request::FlowLog { after })? {
        Reply::FlowLog(v) => Ok(v),
        other => Err(Error::Unexpected {
            expected: "flow-log",
            got: reply_kind(&other),
        }),
    }
}

/// One JSON object per line, so that the output can be piped record by record.
fn json_lines(out: &mut dyn Write, entries: &[FlowLogEntry]) -> Result<(), Error> {
    for e in entries {
        serde_json::to_writer(&mut *out, e).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Runs `vsctl flows log`.
pub fn log(
    client: &mut Client,
    args: &FlowLogArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let follow = args.follow.then_some(FOLLOW_INTERVAL);
    run(client, args.after, follow, None, json, out)
}

/// Asks for the records after `after`; with `follow`, again every interval
/// for those after the last one seen, `polls` times in all (forever when
/// `None`).
fn run(
    client: &mut Client,
    mut after: u64,
    follow: Option<Duration>,
    polls: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let Some(interval) = follow else {
        let entries = fetch(client, after)?;
        if json {
            return json_lines(out, &entries);
        }
        out.write_all(render::flow_log(&entries).as_bytes())?;
        return Ok(());
    };
    if !json {
        out.write_all(render::flow_follow_header().as_bytes())?;
        out.flush()?;
    }
    let mut done = 0u64;
    loop {
        let entries = fetch(client, after)?;
        if json {
            json_lines(out, &entries)?;
        } else {
            out.write_all(render::flow_rows(&entries).as_bytes())?;
        }
        out.flush()?;
        after = entries.iter().map(|e| e.seq).fold(after, u64::max);
        done += 1;
        if polls.is_some_and(|n| done >= n) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{run as run_cli, FakeServer};
    use api::Response;

    fn entry(seq: u64, protocol: &str, sport: u16, dport: u16) -> FlowLogEntry {
        FlowLogEntry {
            seq,
            time: 1_709_211_909 + seq,
            endpoint: "shop/web-0".into(),
            direction: "ingress".into(),
            protocol: protocol.into(),
            src: "10.65.0.7".parse().unwrap(),
            dst: "10.65.0.5".parse().unwrap(),
            sport,
            dport,
            rule: "shop/log-all ingress rule 0".into(),
            verdict: "allow".into(),
            decided_by: "shop/allow-web ingress rule 1".into(),
        }
    }

    fn reply(entries: &[FlowLogEntry]) -> String {
        serde_json::to_string(&Response::Ok {
            result: Reply::FlowLog(entries.to_vec()),
        })
        .unwrap()
    }

    #[test]
    fn table_with_ports_and_icmp() {
        let server = FakeServer::start(vec![reply(&[
            entry(4, "TCP", 40000, 80),
            entry(5, "ICMP", 0, 8 << 8),
            entry(6, "47", 0, 0),
        ])]);
        let (code, out, err) = run_cli(&server, &["flows", "log", "--after", "3"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "TIME                  ENDPOINT    DIR      PROTO  SRC:SPORT        DST:DPORT                RULE                         VERDICT  DECIDED-BY\n\
             2024-02-29T13:05:13Z  shop/web-0  ingress  TCP    10.65.0.7:40000  10.65.0.5:80             shop/log-all ingress rule 0  allow    shop/allow-web ingress rule 1\n\
             2024-02-29T13:05:14Z  shop/web-0  ingress  ICMP   10.65.0.7        10.65.0.5 type 8 code 0  shop/log-all ingress rule 0  allow    shop/allow-web ingress rule 1\n\
             2024-02-29T13:05:15Z  shop/web-0  ingress  47     10.65.0.7        10.65.0.5                shop/log-all ingress rule 0  allow    shop/allow-web ingress rule 1\n"
        );
        assert_eq!(server.requests(), vec![Request::FlowLog { after: 3 }]);
    }

    #[test]
    fn empty_table_is_the_header() {
        let server = FakeServer::start(vec![reply(&[])]);
        let (code, out, _) = run_cli(&server, &["flows", "log"]);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "TIME  ENDPOINT  DIR  PROTO  SRC:SPORT  DST:DPORT  RULE  VERDICT  DECIDED-BY\n"
        );
        assert_eq!(server.requests(), vec![Request::FlowLog { after: 0 }]);
    }

    #[test]
    fn json_is_one_record_per_line() {
        let records = [entry(1, "UDP", 5353, 53), entry(2, "TCP", 1, 2)];
        let server = FakeServer::start(vec![reply(&records)]);
        let (code, out, err) = run_cli(&server, &["flows", "log", "--json"]);
        assert_eq!((code, err.as_str()), (0, ""));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        for (line, want) in lines.iter().zip(&records) {
            let got: FlowLogEntry = serde_json::from_str(line).unwrap();
            assert_eq!(&got, want);
        }
        assert!(
            lines[0].starts_with(r#"{"seq":1,"time":1709211910,"#),
            "{out}"
        );
    }

    #[test]
    fn refused_and_unexpected_replies() {
        let server = FakeServer::start(vec![r#"{"status":"ok","result":{"kind":"done"}}"#.into()]);
        let (code, out, err) = run_cli(&server, &["flows", "log"]);
        assert_eq!((code, out.as_str()), (2, ""));
        assert_eq!(
            err,
            "vsctl: unexpected reply from vswitchd: expected 'flow-log', got 'done'\n"
        );
    }

    /// Runs the follow loop against a fake server for `polls` requests.
    fn follow(replies: Vec<String>, after: u64, json: bool) -> (String, Vec<Request>) {
        let polls = replies.len() as u64;
        let server = FakeServer::start(replies);
        let mut client = Client::connect(server.path()).unwrap();
        let mut out = Vec::new();
        run(
            &mut client,
            after,
            Some(Duration::from_millis(1)),
            Some(polls),
            json,
            &mut out,
        )
        .unwrap();
        drop(client);
        (String::from_utf8(out).unwrap(), server.requests())
    }

    #[test]
    fn follow_asks_after_the_last_seq_seen() {
        let (out, requests) = follow(
            vec![
                reply(&[entry(7, "TCP", 1, 80), entry(8, "TCP", 2, 80)]),
                reply(&[]),
                reply(&[entry(9, "UDP", 3, 53)]),
                reply(&[]),
            ],
            5,
            false,
        );
        assert_eq!(
            requests,
            [5, 8, 8, 9].map(|after| Request::FlowLog { after })
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(
            lines[0].starts_with(
                "TIME                  ENDPOINT                  DIR      PROTO  SRC:SPORT"
            ),
            "{out}"
        );
        assert!(lines[1].starts_with("2024-02-29T13:05:16Z  shop/web-0                ingress  TCP    10.65.0.7:1            10.65.0.5:80"), "{out}");
        assert!(lines[3].contains("  UDP  "), "{out}");
    }

    #[test]
    fn follow_json_has_no_header() {
        let (out, requests) = follow(
            vec![
                reply(&[entry(1, "TCP", 1, 80)]),
                reply(&[entry(2, "TCP", 1, 80)]),
            ],
            0,
            true,
        );
        assert_eq!(requests, [0, 1].map(|after| Request::FlowLog { after }));
        let seqs: Vec<u64> = out
            .lines()
            .map(|l| serde_json::from_str::<FlowLogEntry>(l).unwrap().seq)
            .collect();
        assert_eq!(seqs, [1, 2]);
    }
}
