//! Drives a file-backed IPAM from a separate process, for the multi-process and kill -9 tests
//! (and by hand, to poke at a state file).
//!
//! ```text
//! ipam-stress assign STATE NODE PREFIX COUNT   assign COUNT handles PREFIX0..; prints "A handle addr"
//! ipam-stress churn  STATE NODE PREFIX SEED    assign/release random handles until killed;
//!                                              prints "a handle" / "r handle" before each step and
//!                                              "A handle addr" / "R handle" once it is committed
//! ```
//!
//! A line is written only after the store returned, i.e. after the state is durable, so a reader
//! may treat every complete "A"/"R" line as a promise the state file must keep.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;

use ipam::{Attributes, FamilyCount, FileStore, HandleId, Ipam, PoolSelection};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["assign", state, node, prefix, count] => count
            .parse()
            .map_err(|e| format!("COUNT: {e}"))
            .and_then(|n| assign(state, node, prefix, n)),
        ["churn", state, node, prefix, seed] => seed
            .parse()
            .map_err(|e| format!("SEED: {e}"))
            .and_then(|s| churn(state, node, prefix, s)),
        _ => Err(
            "usage: ipam-stress assign STATE NODE PREFIX COUNT | churn STATE NODE PREFIX SEED"
                .into(),
        ),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipam-stress: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open(state: &str) -> Result<Ipam<FileStore>, String> {
    Ok(Ipam::new(
        FileStore::open(state).map_err(|e| e.to_string())?,
    ))
}

fn handle(prefix: &str, i: u64) -> Result<HandleId, String> {
    HandleId::new(&format!("{prefix}{i}"), "eth0").map_err(|e| e.to_string())
}

fn assign_one(ipam: &Ipam<FileStore>, h: &HandleId, node: &str) -> Result<String, String> {
    let got = ipam
        .assign(
            h,
            node,
            &PoolSelection::Any,
            FamilyCount::V4,
            &Attributes::new(),
        )
        .map_err(|e| e.to_string())?;
    Ok(got.addresses[0].to_string())
}

fn assign(state: &str, node: &str, prefix: &str, count: u64) -> Result<(), String> {
    let ipam = open(state)?;
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let h = handle(prefix, i)?;
        let addr = assign_one(&ipam, &h, node)?;
        writeln!(out, "A {h} {addr}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn churn(state: &str, node: &str, prefix: &str, seed: u64) -> Result<(), String> {
    let ipam = open(state)?;
    let mut out = std::io::stdout().lock();
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut held: HashSet<u64> = HashSet::new();
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = rng % 32;
        let h = handle(prefix, i)?;
        if held.remove(&i) {
            writeln!(out, "r {h}").map_err(|e| e.to_string())?;
            ipam.release(&h).map_err(|e| e.to_string())?;
            writeln!(out, "R {h}").map_err(|e| e.to_string())?;
        } else {
            writeln!(out, "a {h}").map_err(|e| e.to_string())?;
            let addr = assign_one(&ipam, &h, node)?;
            held.insert(i);
            writeln!(out, "A {h} {addr}").map_err(|e| e.to_string())?;
        }
    }
}
