//! The command line: seven subcommands, plain `--flag value` options.

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Validate { file: String },
    Render { file: String, format: Format },
    Simulate(Simulate),
    Generate(Generate),
    Report(Report),
    Whatif(Whatif),
    Schema,
    Help,
}

/// `generate`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub config: String,
    pub seed: u64,
    pub users: u32,
    pub days: u32,
    /// `YYYY-MM-DD`, checked.
    pub start: String,
}

/// How `report` and `whatif` write what they found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for a terminal.
    Table,
    Markdown,
    Json,
    /// A standalone page (`report` only).
    Html,
}

/// `report`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The ledger, or `-` for standard input.
    pub ledger: String,
    pub config: String,
    pub format: Output,
    /// Classes counted as premium instead of the default (priced by model).
    pub premium: Option<Vec<String>>,
    /// Classes counted as batch instead of the default (counted by records).
    pub batch: Option<Vec<String>>,
}

/// `whatif`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whatif {
    /// The ledger, or `-` for standard input.
    pub ledger: String,
    /// The matrix the ledger was recorded under.
    pub config: String,
    /// The matrix to try.
    pub proposed: String,
    pub format: Output,
}

/// How `render` writes the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
}

/// `simulate`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulate {
    pub file: String,
    pub tier: String,
    pub user: String,
    pub workspace: Option<String>,
    pub organisation: Option<String>,
    pub utc_offset: Option<String>,
    /// The trace file, or `-` for standard input.
    pub script: String,
    pub json: bool,
    /// One line per request, without headers.
    pub brief: bool,
}

pub const USAGE: &str = "\
quota-matrix: the quota matrix as a product document

Usage:
  quota-matrix validate FILE
      Check FILE as the filter does (errors name the JSON path; exit 1),
      then warn about smells (stderr; exit 0 when there is no error).
  quota-matrix render FILE [--format markdown|html]
      The matrix as tables a person reads: limits per plan and class,
      what each class counts, and the sentences users see.
  quota-matrix simulate FILE --tier TIER --script TRACE [--user ID]
                        [--workspace ID] [--organisation ID]
                        [--utc-offset +HH:MM] [--brief | --json]
      Replay TRACE (JSON lines: time, path, method, body, headers) through
      the filter's core with a manual clock; print, per request, the class,
      cost, status, state, response headers and the message shown, and for
      a cell of stacked limits the limit that bound the request
      (--brief: one line per request, no headers; --json: JSON lines).
      A line's optional `response` (status, content_type, body)
      is the upstream's answer: the charge settles to the usage it reports
      (a token or priced class) or goes back (a refunded status), and the
      step shows what it settled at. Classes metered in money read as money.
      TRACE may be `-` (standard input). --user defaults to sim-user.
  quota-matrix generate --config CONFIG [--seed N] [--users N] [--days N]
                        [--start YYYY-MM-DD]
      Write a made-up month of traffic under CONFIG as the filter's ledger
      (JSON lines, stdout): casual and power users on its tiers, sessions
      by hour of day, warnings, refusals, upgrades, abandonment, streamed
      token usage, upstream failures and retries, each request decided by
      the filter's core. The same seed gives the same bytes. Defaults:
      --seed 1 --users 100 --days 30 --start 2026-11-01.
  quota-matrix report LEDGER --config CONFIG
                      [--format table|markdown|json|html]
                      [--premium CLASS,...] [--batch CLASS,...]
      The experience of the limits, per class and tier, from a ledger:
      soft- and hard-limit hit rates, abandonment within 60 s of a quota
      error, conversion after an upgrade prompt, premium and batch shares,
      output to input tokens, failed and retried requests, cached input,
      spend.
      html is a standalone page with charts. LEDGER may be `-` (stdin).
  quota-matrix whatif LEDGER --config CURRENT --proposed PROPOSED
                      [--format table|markdown|json]
      Replay the ledger's requests through both matrices with the filter's
      core, and show per class and tier who would be warned, blocked,
      degraded or billed overage, and the spend, side by side.
  quota-matrix schema
      Print the JSON Schema (draft 2020-12) of the configuration.
  quota-matrix help
      This text.

Exit status: 0 done, 1 the input is wrong (bad config, trace, ledger or file),
2 the command line is wrong.
";

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let Some(sub) = args.next() else {
        return Ok(Command::Help);
    };
    let mut rest = Args::new(&sub, args.collect());
    let command = match sub.as_str() {
        "help" | "--help" | "-h" => Command::Help,
        "validate" => Command::Validate { file: rest.file()? },
        "render" => {
            let format = match rest.option("--format")?.as_deref() {
                None | Some("markdown" | "md") => Format::Markdown,
                Some("html") => Format::Html,
                Some(other) => return Err(format!("render: --format must be markdown or html, got \"{other}\"")),
            };
            Command::Render { file: rest.file()?, format }
        }
        "simulate" => Command::Simulate(Simulate {
            tier: rest.option("--tier")?.ok_or("simulate: --tier is required (a tier name from the config)")?,
            script: rest
                .option("--script")?
                .ok_or("simulate: --script is required (a JSON-lines trace, or - for stdin)")?,
            user: rest.option("--user")?.unwrap_or_else(|| "sim-user".to_string()),
            workspace: rest.option("--workspace")?,
            organisation: rest.option("--organisation")?,
            utc_offset: rest.option("--utc-offset")?,
            json: rest.flag("--json"),
            brief: rest.flag("--brief"),
            file: rest.file()?,
        }),
        "generate" => Command::Generate(Generate {
            config: rest
                .option("--config")?
                .ok_or("generate: --config is required (the matrix the traffic runs under)")?,
            seed: number(&mut rest, "--seed", u64::MAX)?.unwrap_or(crate::generate::DEFAULT_SEED),
            users: count(&mut rest, "--users", crate::generate::MAX_USERS)?.unwrap_or(crate::generate::DEFAULT_USERS),
            days: count(&mut rest, "--days", crate::generate::MAX_DAYS)?.unwrap_or(crate::generate::DEFAULT_DAYS),
            start: match rest.option("--start")? {
                None => crate::generate::DEFAULT_START.to_string(),
                Some(d) if crate::generate::parse_date(&d).is_some() => d,
                Some(d) => return Err(format!("generate: --start must be a date like 2026-11-01, got \"{d}\"")),
            },
        }),
        "report" => Command::Report(Report {
            config: rest
                .option("--config")?
                .ok_or("report: --config is required (the matrix the ledger was recorded under)")?,
            format: output(&mut rest, true)?,
            premium: list(&mut rest, "--premium")?,
            batch: list(&mut rest, "--batch")?,
            ledger: rest.positional("which ledger? (a file of ledger records, or - for standard input)")?,
        }),
        "whatif" => Command::Whatif(Whatif {
            config: rest
                .option("--config")?
                .ok_or("whatif: --config is required (the matrix the ledger was recorded under)")?,
            proposed: rest.option("--proposed")?.ok_or("whatif: --proposed is required (the matrix to try)")?,
            format: output(&mut rest, false)?,
            ledger: rest.positional("which ledger? (a file of ledger records, or - for standard input)")?,
        }),
        "schema" => Command::Schema,
        other => return Err(format!("unknown command \"{other}\"")),
    };
    rest.finish()?;
    Ok(command)
}

/// `--format` of `report` (with `html`) or `whatif`.
fn output(rest: &mut Args, html: bool) -> Result<Output, String> {
    Ok(match rest.option("--format")?.as_deref() {
        None | Some("table") => Output::Table,
        Some("markdown" | "md") => Output::Markdown,
        Some("json") => Output::Json,
        Some("html") if html => Output::Html,
        Some(other) if html => {
            return Err(format!("{}: --format must be table, markdown, json or html, got \"{other}\"", rest.sub))
        }
        Some(other) => return Err(format!("{}: --format must be table, markdown or json, got \"{other}\"", rest.sub)),
    })
}

/// A whole number option, at most `most`.
fn number(rest: &mut Args, name: &str, most: u64) -> Result<Option<u64>, String> {
    let Some(text) = rest.option(name)? else { return Ok(None) };
    match text.parse::<u64>() {
        Ok(n) if n <= most => Ok(Some(n)),
        _ => Err(format!("{}: {name} must be a whole number from 0 to {most}, got \"{text}\"", rest.sub)),
    }
}

/// A count option: 1 to `most`.
fn count(rest: &mut Args, name: &str, most: u32) -> Result<Option<u32>, String> {
    let Some(text) = rest.option(name)? else { return Ok(None) };
    match text.parse::<u32>() {
        Ok(n) if (1..=most).contains(&n) => Ok(Some(n)),
        _ => Err(format!("{}: {name} must be a whole number from 1 to {most}, got \"{text}\"", rest.sub)),
    }
}

/// A comma-separated list of class names.
fn list(rest: &mut Args, name: &str) -> Result<Option<Vec<String>>, String> {
    let Some(text) = rest.option(name)? else { return Ok(None) };
    Ok(Some(text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()))
}

/// The arguments after the subcommand, consumed as they are recognised.
struct Args {
    sub: String,
    items: Vec<String>,
}

impl Args {
    fn new(sub: &str, items: Vec<String>) -> Args {
        // `--flag=value` is the same as `--flag value`.
        let mut split = Vec::with_capacity(items.len());
        for item in items {
            match item.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    split.push(flag.to_string());
                    split.push(value.to_string());
                }
                _ => split.push(item),
            }
        }
        Args { sub: sub.to_string(), items: split }
    }

    fn option(&mut self, name: &str) -> Result<Option<String>, String> {
        let Some(at) = self.items.iter().position(|a| a == name) else {
            return Ok(None);
        };
        let value = self
            .items
            .get(at + 1)
            .filter(|v| !v.starts_with("--"))
            .cloned()
            .ok_or_else(|| format!("{}: {name} needs a value", self.sub))?;
        self.items.drain(at..at + 2);
        if self.items.iter().any(|a| a == name) {
            return Err(format!("{}: {name} is given twice", self.sub));
        }
        Ok(Some(value))
    }

    fn flag(&mut self, name: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|a| a != name);
        self.items.len() != before
    }

    /// The one positional argument: the config file.
    fn file(&mut self) -> Result<String, String> {
        self.positional("which config file? (e.g. envoy/demo-config.json)")
    }

    /// The one positional argument (`-` counts: standard input); `missing`
    /// asks for it.
    fn positional(&mut self, missing: &str) -> Result<String, String> {
        let at =
            self.items.iter().position(|a| !a.starts_with("--")).ok_or_else(|| format!("{}: {missing}", self.sub))?;
        Ok(self.items.remove(at))
    }

    fn finish(self) -> Result<(), String> {
        match self.items.first() {
            None => Ok(()),
            Some(extra) if extra.starts_with("--") => Err(format!("{}: unknown option {extra}", self.sub)),
            Some(extra) => Err(format!("{}: unexpected argument \"{extra}\"", self.sub)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn reads_each_subcommand() {
        assert_eq!(parse_str("validate a.json"), Ok(Command::Validate { file: "a.json".into() }));
        assert_eq!(
            parse_str("render --format=html a.json"),
            Ok(Command::Render { file: "a.json".into(), format: Format::Html })
        );
        assert_eq!(parse_str("schema"), Ok(Command::Schema));
        assert_eq!(parse_str(""), Ok(Command::Help));
        let Ok(Command::Simulate(s)) = parse_str("simulate a.json --tier free --script t.jsonl --json") else {
            panic!("not a simulate command");
        };
        assert_eq!(
            (s.tier.as_str(), s.user.as_str(), s.script.as_str(), s.json),
            ("free", "sim-user", "t.jsonl", true)
        );
    }

    #[test]
    fn simulate_takes_a_workspace_and_an_organisation() {
        let Ok(Command::Simulate(s)) =
            parse_str("simulate a.json --tier team --script t.jsonl --workspace acme --organisation=globex")
        else {
            panic!("not a simulate command");
        };
        assert_eq!((s.workspace.as_deref(), s.organisation.as_deref()), (Some("acme"), Some("globex")));
        assert_eq!(
            parse_str("simulate a.json --tier team --script t.jsonl --organisation"),
            Err("simulate: --organisation needs a value".into())
        );
    }

    #[test]
    fn reads_generate_report_and_whatif() {
        assert_eq!(
            parse_str("generate --config c.json --seed 9 --users=5 --days 7 --start 2026-02-01"),
            Ok(Command::Generate(Generate {
                config: "c.json".into(),
                seed: 9,
                users: 5,
                days: 7,
                start: "2026-02-01".into()
            }))
        );
        let Ok(Command::Generate(g)) = parse_str("generate --config c.json") else { panic!("not generate") };
        assert_eq!((g.seed, g.users, g.days, g.start.as_str()), (1, 100, 30, "2026-11-01"));
        assert_eq!(
            parse_str("report l.jsonl --config c.json --format html --premium a,b"),
            Ok(Command::Report(Report {
                ledger: "l.jsonl".into(),
                config: "c.json".into(),
                format: Output::Html,
                premium: Some(vec!["a".into(), "b".into()]),
                batch: None,
            }))
        );
        assert_eq!(
            parse_str("whatif - --config c.json --proposed p.json --format json"),
            Ok(Command::Whatif(Whatif {
                ledger: "-".into(),
                config: "c.json".into(),
                proposed: "p.json".into(),
                format: Output::Json
            }))
        );
    }

    #[test]
    fn says_what_is_wrong_with_generate_report_and_whatif() {
        assert_eq!(
            parse_str("generate --config c.json --users 0"),
            Err("generate: --users must be a whole number from 1 to 100000, got \"0\"".into())
        );
        assert_eq!(
            parse_str("generate --config c.json --days -3"),
            Err("generate: --days must be a whole number from 1 to 366, got \"-3\"".into())
        );
        assert_eq!(
            parse_str("generate --config c.json --start 2026-02-30"),
            Err("generate: --start must be a date like 2026-11-01, got \"2026-02-30\"".into())
        );
        assert_eq!(
            parse_str("generate"),
            Err("generate: --config is required (the matrix the traffic runs under)".into())
        );
        assert_eq!(
            parse_str("report --config c.json"),
            Err("report: which ledger? (a file of ledger records, or - for standard input)".into())
        );
        assert_eq!(
            parse_str("whatif l.jsonl --config c.json --proposed p.json --format html"),
            Err("whatif: --format must be table, markdown or json, got \"html\"".into())
        );
        assert_eq!(
            parse_str("whatif l.jsonl --config c.json"),
            Err("whatif: --proposed is required (the matrix to try)".into())
        );
    }

    #[test]
    fn says_what_is_wrong_with_the_command_line() {
        assert_eq!(
            parse_str("render a.json --format pdf"),
            Err("render: --format must be markdown or html, got \"pdf\"".into())
        );
        assert_eq!(
            parse_str("simulate a.json --script t.jsonl"),
            Err("simulate: --tier is required (a tier name from the config)".into())
        );
        assert_eq!(parse_str("validate a.json b.json"), Err("validate: unexpected argument \"b.json\"".into()));
        assert_eq!(parse_str("validate --strict a.json"), Err("validate: unknown option --strict".into()));
        assert_eq!(parse_str("simulate a.json --tier"), Err("simulate: --tier needs a value".into()));
        assert_eq!(parse_str("lint a.json"), Err("unknown command \"lint\"".into()));
    }
}
