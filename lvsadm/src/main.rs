//! lvsadm: administer lvsd with ipvsadm's command line and output.
//!
//! The modules: `args` parses ipvsadm's options, `restore` reads -R input,
//! `format` prints ipvsadm's formats, `client` talks to lvsd's admin
//! socket, `remote` runs a command on another host (-H), and `app` ties
//! them together.

mod app;
mod args;
mod client;
mod format;
mod remote;
mod restore;

fn main() {
    let mut argv = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(s) => argv.push(s),
            Err(raw) => {
                eprintln!(
                    "lvsadm: argument is not valid UTF-8: {}",
                    raw.to_string_lossy()
                );
                std::process::exit(app::EXIT_USAGE);
            }
        }
    }
    std::process::exit(app::main(&argv));
}
