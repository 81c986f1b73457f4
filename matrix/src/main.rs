//! `quota-matrix`: the quota matrix as a product document. Validate it with
//! the filter's own checks, render it as tables, replay requests through it,
//! print its JSON Schema; generate a ledger, report on one, and replay one
//! through a proposed matrix. See `cli::USAGE`.

mod cli;
mod describe;
mod generate;
mod ledger;
mod load;
mod render;
mod report;
mod rng;
mod simulate;
mod smells;
mod trace;
mod whatif;

use cli::{Command, Format, Output};
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
        Command::Generate(args) => generate(&args),
        Command::Report(args) => report_command(&args),
        Command::Whatif(args) => {
            let current = load::load(&args.config)?;
            let proposed = load::load(&args.proposed)?;
            let ledger = ledger::read(&args.ledger)?;
            let comparison = whatif::Comparison::new(&ledger, &current, &proposed);
            Ok(Report { stdout: comparison.write(args.format), stderr: ledger.warning().unwrap_or_default(), code: 0 })
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

fn generate(args: &cli::Generate) -> Result<Report, String> {
    let loaded = load::load(&args.config)?;
    let start_day =
        generate::parse_date(&args.start).ok_or_else(|| format!("--start \"{}\" is not a date", args.start))?;
    let options = generate::Options { seed: args.seed, users: args.users, days: args.days, start_day };
    let generated = generate::run(&loaded, &options)?;
    let stderr: String = generated.notes.iter().map(|n| format!("generate: {n}\n")).collect();
    Ok(Report { stdout: generated.ledger, stderr, code: 0 })
}

fn report_command(args: &cli::Report) -> Result<Report, String> {
    let loaded = load::load(&args.config)?;
    let definitions = report::metrics::Definitions::of(&loaded.config, args.premium.as_deref(), args.batch.as_deref())?;
    let ledger = ledger::read(&args.ledger)?;
    let r = report::metrics::report(&loaded.config, &loaded.path, &ledger, definitions);
    let stdout = match args.format {
        Output::Table => report::table(&r),
        Output::Markdown => report::markdown(&r),
        Output::Json => report::json(&r),
        Output::Html => report::html(&r),
    };
    Ok(Report { stdout, stderr: ledger.warning().unwrap_or_default(), code: 0 })
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
