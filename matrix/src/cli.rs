//! The command line: four subcommands, plain `--flag value` options.

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Validate { file: String },
    Render { file: String, format: Format },
    Simulate(Simulate),
    Schema,
    Help,
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
  quota-matrix schema
      Print the JSON Schema (draft 2020-12) of the configuration.
  quota-matrix help
      This text.

Exit status: 0 done, 1 the input is wrong (bad config, trace or file),
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
        "schema" => Command::Schema,
        other => return Err(format!("unknown command \"{other}\"")),
    };
    rest.finish()?;
    Ok(command)
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
        let at = self
            .items
            .iter()
            .position(|a| !a.starts_with("--"))
            .ok_or_else(|| format!("{}: which config file? (e.g. envoy/demo-config.json)", self.sub))?;
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
