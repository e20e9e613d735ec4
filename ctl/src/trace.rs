//! `vsctl trace`: packets followed through vswitchd's stages, live or made
//! up (`--inject`), printed as each stage's decision.
//!
//! A live trace is read every 100 ms and each packet printed as it comes;
//! it ends when its count is reached, its time is up, or on SIGINT or
//! SIGTERM (the switch ends a trace nobody reads on its own).

use crate::cli::{Output, TraceArgs};
use crate::{expect_done, reply_kind, Error};
use api::{Client, Reply, Request, TraceInject, TraceStart, TracedPacket};
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);

/// A traced packet as text: a header line, then a line per stage.
pub fn render(n: usize, p: &TracedPacket) -> String {
    let mut s = format!("packet {n} on {}", p.port);
    if let Some(pod) = &p.pod {
        s.push_str(&format!(" (pod {pod})"));
    }
    s.push_str(&format!(": {}\n", p.packet));
    let w = p.steps.iter().map(|x| x.stage.len()).max().unwrap_or(0);
    for step in &p.steps {
        s.push_str(&format!("  {:w$}  {}\n", step.stage, step.detail));
    }
    s
}

fn print(fmt: Output, out: &mut dyn Write, n: usize, p: &TracedPacket) -> Result<(), Error> {
    match fmt {
        Output::Json => {
            serde_json::to_writer(&mut *out, p).map_err(|e| Error::Output(e.into()))?;
            writeln!(out)?;
        }
        Output::Yaml => {
            let y = serde_yaml_ng::to_string(p).map_err(std::io::Error::other)?;
            writeln!(out, "---\n{}", y.trim_end())?;
        }
        Output::Table => out.write_all(render(n, p).as_bytes())?,
    }
    out.flush()?;
    Ok(())
}

/// Runs `vsctl trace`.
pub fn trace(
    client: &mut Client,
    args: &TraceArgs,
    fmt: Output,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<(), Error> {
    if args.inject {
        let (Some(from), Some(dst)) = (args.from.clone(), args.to) else {
            return Err(Error::Usage("--inject needs --from and --to".into()));
        };
        let inject = TraceInject {
            from,
            src: args.src,
            dst,
            protocol: args.proto.clone(),
            src_port: args.sport,
            dst_port: args.dport,
            tcp_flags: args.flags.clone(),
        };
        let p = match client.call(&Request::TraceInject { inject })? {
            Reply::Injected(p) => p,
            other => {
                return Err(Error::Unexpected {
                    expected: "injected",
                    got: reply_kind(&other),
                })
            }
        };
        return print(fmt, out, 1, &p);
    }
    let stop = crate::stop_on_signals()?;
    let start = TraceStart {
        ports: args.ports.clone(),
        filter: args.filter.clone(),
        count: args.count,
    };
    let info = match client.call(&Request::TraceStart { start })? {
        Reply::Trace(i) => i,
        other => {
            return Err(Error::Unexpected {
                expected: "trace",
                got: reply_kind(&other),
            })
        }
    };
    let names: Vec<&str> = info.ports.iter().map(|p| p.name.as_str()).collect();
    let _ = writeln!(
        log,
        "tracing {} packet(s) received on {}",
        args.count.max(1),
        names.join(", ")
    );
    let began = Instant::now();
    let mut seen = 0usize;
    loop {
        let chunk = match client.call(&Request::TraceRead { id: info.id })? {
            Reply::Traced(c) => c,
            other => {
                return Err(Error::Unexpected {
                    expected: "traced",
                    got: reply_kind(&other),
                })
            }
        };
        for p in &chunk.packets {
            seen += 1;
            print(fmt, out, seen, p)?;
        }
        if chunk.done {
            return Ok(());
        }
        if stop.load(Relaxed) || began.elapsed() >= args.timeout {
            break;
        }
        std::thread::sleep(POLL);
    }
    expect_done(client.call(&Request::TraceStop { id: info.id })?)?;
    let _ = writeln!(
        log,
        "{seen} of {} packet(s) traced before the trace ended",
        args.count.max(1)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::TraceStep;

    #[test]
    fn a_packet_renders_a_line_per_stage_aligned() {
        let p = TracedPacket {
            port: "pod-1".into(),
            pod: Some("shop/a".into()),
            packet: "10.0.0.1:4000 > 10.0.0.2:80 tcp [S] (54 bytes)".into(),
            steps: vec![
                TraceStep {
                    stage: "egress".into(),
                    detail: "allowed".into(),
                },
                TraceStep {
                    stage: "dropped".into(),
                    detail: "policy_ingress".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            render(2, &p),
            "packet 2 on pod-1 (pod shop/a): 10.0.0.1:4000 > 10.0.0.2:80 tcp [S] (54 bytes)\n  \
             egress   allowed\n  dropped  policy_ingress\n"
        );
    }
}
