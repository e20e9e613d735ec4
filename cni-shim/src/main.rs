//! The `vswitch-cni` binary: reads the environment and stdin, runs the
//! command, prints the result or the error object, exits 0 or 1.

use std::io::{IsTerminal, Read, Write};

fn main() {
    let mut stdin = Vec::new();
    let input = std::io::stdin();
    // a person running it by hand at a terminal gets the error at once
    if !input.is_terminal() {
        if let Err(e) = input.lock().read_to_end(&mut stdin) {
            let err = cni_shim::CniError::new(
                cni_shim::error::IO_FAILURE,
                format!("cannot read the network configuration from stdin: {e}"),
            );
            println!("{}", err.to_json(cni_shim::version::LATEST));
            std::process::exit(1);
        }
    }
    let out = cni_shim::run(
        |k| std::env::var(k).ok(),
        &stdin,
        &mut cni_shim::System::default(),
    );
    let mut stdout = std::io::stdout().lock();
    if !out.stdout.is_empty() {
        let _ = writeln!(stdout, "{}", out.stdout);
    }
    let _ = stdout.flush();
    std::process::exit(out.exit_code);
}
