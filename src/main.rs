//! The `taskmesh` command: argument parsing and printing only; everything
//! else is the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Exit code of a process whose reader went away, as a shell reports one
/// killed by SIGPIPE (128 + 13).
const READER_GONE: i32 = 141;

fn main() -> ExitCode {
    quiet_when_the_reader_leaves();
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `taskmesh status | head` closes the pipe early: printing then fails
/// with a broken pipe, which the standard printing macros turn into a
/// panic. Like other Unix tools, exit quietly instead.
fn quiet_when_the_reader_leaves() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(READER_GONE);
        }
        default(info)
    }));
}
