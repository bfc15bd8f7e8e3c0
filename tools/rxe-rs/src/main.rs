//! The rxe-rs command. `rxe-rs doctor` checks a machine's Soft-RoCE set-up
//! (kernel, rxe links, netdevs, GIDs, MTU, memlock, firewall, libibverbs and
//! which provider serves rxe, rdma_cm) and prints OK / WARN / FAIL per
//! finding with the command that fixes it; exit status 1 if any FAILs.
//! `rxe-rs sandbox -- <command>` runs a command in a throwaway VM whose
//! kernel has rdma_rxe, with rxe-rs serving rxe0 (sandbox.rs).

mod checks;
mod facts;
mod gather;
mod sandbox;
mod sandbox_guest;
mod sandbox_kernel;
#[cfg(test)]
mod sandbox_tests;
#[cfg(test)]
mod tests;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rxe-rs", version, about = "Tools for rxe-rs, the Rust provider for Soft-RoCE (rdma_rxe)")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
    /// Run a command in a throwaway VM whose kernel has rdma_rxe: rxe0 up
    /// on a NIC wired to nothing outside, rxe-rs serving it, the current
    /// directory shared. Exits with the command's status (124: --timeout,
    /// 125: the sandbox itself failed).
    Sandbox(Box<sandbox::SandboxArgs>),
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
        Cmd::Sandbox(args) => std::process::exit(sandbox::main(*args)),
    }
}
