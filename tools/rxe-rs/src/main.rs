//! The rxe-rs command. `rxe-rs doctor` checks a machine's Soft-RoCE set-up
//! (kernel, rxe links, netdevs, GIDs, MTU, memlock, firewall, libibverbs and
//! which provider serves rxe, rdma_cm) and prints OK / WARN / FAIL per
//! finding with the command that fixes it; exit status 1 if any FAILs.

mod checks;
mod facts;
mod gather;
#[cfg(test)]
mod tests;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rxe-rs", version, about = "Tools for rxe-rs, the Rust provider for Soft-RoCE (rdma_rxe)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check this machine's Soft-RoCE set-up: each finding OK, WARN or FAIL
    /// with the command that fixes it. Exit status 0 when nothing FAILs.
    Doctor {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// Do not open the rxe devices through libibverbs (then the ports'
        /// active_mtu is derived from the netdev MTU instead of read).
        #[arg(long)]
        no_open: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Doctor { json, no_open } => {
            let facts = gather::gather(!no_open);
            let findings = checks::all(&facts);
            if json {
                println!("{}", checks::json(&findings));
            } else {
                print!("{}", checks::text(&findings));
            }
            let failed = findings.iter().any(|f| f.status == checks::Status::Fail);
            std::process::exit(i32::from(failed));
        }
    }
}
