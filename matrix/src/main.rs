//! `quota-matrix`: the quota matrix as a product document. Validate it with
//! the filter's own checks, render it as tables, replay requests through it,
//! and print its JSON Schema. See `cli::USAGE`.

mod cli;
mod describe;
mod load;
mod render;
mod simulate;
mod smells;
mod trace;

use cli::{Command, Format};
use std::io::Write;
use std::process::ExitCode;

/// What a command prints, and its exit status.
struct Report {
    stdout: String,
    stderr: String,
    code: u8,
}

impl Report {
    fn out(stdout: String) -> Report {
        Report { stdout, stderr: String::new(), code: 0 }
    }

    fn error(message: &str) -> Report {
        Report { stdout: String::new(), stderr: format!("error: {message}\n"), code: 1 }
    }
}

fn main() -> ExitCode {
    let report = match cli::parse(std::env::args().skip(1)) {
        Ok(command) => run(command).unwrap_or_else(|e| Report::error(&e)),
        Err(e) => Report {
            stdout: String::new(),
            stderr: format!("error: {e}\nRun `quota-matrix help` for the usage.\n"),
            code: 2,
        },
    };
    // Write errors (a closed pipe: `quota-matrix render | head`) are not worth a panic.
    let _ = std::io::stdout().write_all(report.stdout.as_bytes());
    let _ = std::io::stderr().write_all(report.stderr.as_bytes());
    ExitCode::from(report.code)
}

fn run(command: Command) -> Result<Report, String> {
    match command {
        Command::Help => Ok(Report::out(cli::USAGE.to_string())),
        Command::Schema => schema(),
        Command::Validate { file } => Ok(validate(&file)),
        Command::Render { file, format } => {
            let loaded = load::load(&file)?;
            let doc = render::build(&loaded);
            Ok(Report::out(match format {
                Format::Markdown => render::markdown(&doc),
                Format::Html => render::html(&doc),
            }))
        }
        Command::Simulate(args) => {
            let loaded = load::load(&args.file)?;
            let bytes = load::read(&args.script)?;
            let text = String::from_utf8(bytes).map_err(|_| format!("{}: the trace is not UTF-8 text", args.script))?;
            let requests = trace::parse(&text, &args.script)?;
            let steps = simulate::run(&loaded, &args, &requests)?;
            Ok(Report::out(if args.json {
                simulate::json_lines(&steps)
            } else if args.brief {
                simulate::brief(&steps)
            } else {
                simulate::text(&loaded, &args, &steps)
            }))
        }
    }
}

fn schema() -> Result<Report, String> {
    let schema = quota_core::config::json_schema();
    let text = serde_json::to_string_pretty(&schema).map_err(|e| e.to_string())?;
    Ok(Report::out(format!("{text}\n")))
}

/// The filter's verdict (an error stops here), then the smells.
fn validate(file: &str) -> Report {
    let loaded = match load::load(file) {
        Ok(l) => l,
        Err(e) => return Report::error(&e),
    };
    let smells = smells::smells(&loaded.config, &loaded.raw);
    let stderr: String = smells.iter().map(|s| format!("warning: {s}\n")).collect();
    let config = &loaded.config;
    let verdict = match smells.len() {
        0 => "no warnings".to_string(),
        1 => "1 warning".to_string(),
        n => format!("{n} warnings"),
    };
    Report {
        stdout: format!("{file}: valid ({} classes, {} tiers), {verdict}\n", config.classes.len(), config.tiers.len()),
        stderr,
        code: 0,
    }
}
