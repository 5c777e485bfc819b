//! lvsd: the daemon's entry point. Everything happens in [`lvsd::daemon`].

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// A Linux Virtual Server director in user space.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The boot-time configuration file.
    #[arg(short, long, default_value = "/etc/lvsd/lvsd.toml")]
    config: PathBuf,
    /// Check the configuration file and exit: 0 if it is good, 2 if not.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return match lvsd::config::load(&args.config) {
            Ok(c) => {
                println!(
                    "{}: good ({} rule operations)",
                    args.config.display(),
                    c.ops.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lvsd: {e}");
                ExitCode::from(2)
            }
        };
    }
    match lvsd::daemon::run(&args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsd: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
