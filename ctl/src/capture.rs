//! `vsctl capture`: the frames a capture takes in vswitchd, written as
//! pcapng (one interface per port, each frame marked inbound or outbound)
//! to a file or to standard output for tshark or Wireshark.
//!
//! vsctl reads the capture every 50 ms and writes what came at once, so a
//! reader on a pipe sees frames live. It ends the capture when it has its
//! count, when its time is up, on SIGINT or SIGTERM, or when its output
//! goes away; the switch ends a capture nobody reads on its own.

use crate::cli::CaptureArgs;
use crate::{expect_done, reply_kind, Error};
use api::{CaptureDir, CaptureStart, Client, Reply, Request};
use base64::Engine;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);

/// epb_flags: the direction bits of pcapng's Enhanced Packet Block.
fn flags(dir: CaptureDir) -> u32 {
    match dir {
        CaptureDir::In => 1,
        CaptureDir::Out => 2,
    }
}

fn pcap_err(e: pcap_file::PcapError) -> Error {
    match e {
        pcap_file::PcapError::IoError(e) => Error::Output(e),
        e => Error::Output(io::Error::other(e.to_string())),
    }
}

/// Runs a capture until it ends; frames go to `-w`'s file, or to `out` for `-`.
pub fn capture(
    client: &mut Client,
    args: &CaptureArgs,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<(), Error> {
    let stop = crate::stop_on_signals()?;
    let mut file;
    let sink: &mut dyn Write = if args.write == "-" {
        out
    } else {
        file = io::BufWriter::new(std::fs::File::create(&args.write).map_err(|e| {
            Error::Output(io::Error::new(e.kind(), format!("{}: {e}", args.write)))
        })?);
        &mut file
    };
    let start = CaptureStart {
        ports: args.ports.clone(),
        filter: args.filter.clone(),
        snaplen: args.snaplen,
    };
    let info = match client.call(&Request::CaptureStart { start })? {
        Reply::Capture(i) => i,
        other => {
            return Err(Error::Unexpected {
                expected: "capture",
                got: reply_kind(&other),
            })
        }
    };
    let names: Vec<&str> = info.ports.iter().map(|p| p.name.as_str()).collect();
    let _ = writeln!(
        log,
        "capture {} on {}{}",
        info.id,
        names.join(", "),
        args.filter
            .as_deref()
            .map(|f| format!(" (filter: {f})"))
            .unwrap_or_default()
    );
    let result = (|| {
        let mut w = PcapNgWriter::new(&mut *sink).map_err(pcap_err)?;
        let mut iface: HashMap<u16, u32> = HashMap::new();
        for (i, p) in info.ports.iter().enumerate() {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: args.snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(&p.name)),
                    // timestamps in nanoseconds
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            })
            .map_err(pcap_err)?;
            iface.insert(p.port_id, i as u32);
        }
        w.get_mut().flush()?;
        let began = Instant::now();
        let mut taken = 0u64;
        let mut dropped: u64;
        loop {
            let chunk = match client.call(&Request::CaptureRead { id: info.id })? {
                Reply::Captured(c) => c,
                other => {
                    return Err(Error::Unexpected {
                        expected: "captured",
                        got: reply_kind(&other),
                    })
                }
            };
            dropped = chunk.dropped;
            let got = chunk.frames.len();
            for f in chunk.frames {
                if args.count.is_some_and(|c| taken >= c) {
                    break;
                }
                let Some(&interface_id) = iface.get(&f.port_id) else {
                    continue;
                };
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&f.data)
                    .map_err(|e| Error::Output(io::Error::other(format!("bad frame: {e}"))))?;
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id,
                    timestamp: Duration::from_nanos(f.time_ns),
                    original_len: f.len,
                    data: Cow::Owned(data),
                    options: vec![EnhancedPacketOption::Flags(flags(f.dir))],
                })
                .map_err(pcap_err)?;
                taken += 1;
            }
            w.get_mut().flush()?;
            let done = args.count.is_some_and(|c| taken >= c)
                || args.duration.is_some_and(|d| began.elapsed() >= d)
                || stop.load(Relaxed);
            if done {
                break;
            }
            if got == 0 {
                std::thread::sleep(POLL);
            }
        }
        Ok((taken, dropped))
    })();
    // end the capture however the writing went; the switch would end it
    // on its own after its idle timeout
    let stopped = client
        .call(&Request::CaptureStop { id: info.id })
        .map_err(Error::from)
        .and_then(expect_done);
    let (taken, dropped) = result?;
    stopped?;
    let _ = writeln!(
        log,
        "{taken} frames written, {dropped} frames dropped by the switch (capture queue full)"
    );
    Ok(())
}
