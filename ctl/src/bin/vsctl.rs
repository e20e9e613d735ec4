//! vsctl: the operator CLI of vswitchd. See the `ctl` library for the logic.

use clap::Parser;

fn main() {
    let cli = ctl::cli::Cli::parse();
    // stderr stays unlocked: the agent's log goes there from other threads
    let code = ctl::main_with(&cli, &mut std::io::stdout().lock(), &mut std::io::stderr());
    std::process::exit(code);
}
