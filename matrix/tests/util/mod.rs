//! Runs the built `quota-matrix` from the workspace root and compares what it
//! printed with committed files in `matrix/tests/expected/`.
//!
//! `UPDATE_EXPECTED=1 cargo test -p quota-matrix` rewrites those files (and
//! the committed schema) from the current output; review the diff.

// Test support: failing loudly is the point here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root: paths in commands and outputs are relative to it.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The run as a transcript: command, exit status, stdout, stderr.
    pub fn transcript(&self) -> String {
        format!(
            "$ quota-matrix {}\nexit status: {}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

pub fn run(args: &[&str]) -> Run {
    run_with_stdin(args, None)
}

pub fn run_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quota-matrix"))
        .args(args)
        .current_dir(root())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Compares the whole run with `expected/<name>.txt`.
pub fn expect_transcript(name: &str, args: &[&str]) -> Run {
    let r = run(args);
    compare(&root().join("matrix/tests/expected").join(format!("{name}.txt")), &r.transcript());
    r
}

/// A successful run whose stdout is `expected/<file>` (e.g. a rendered page).
pub fn expect_stdout(file: &str, args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "quota-matrix {}", args.join(" "));
    compare(&root().join("matrix/tests/expected").join(file), &r.stdout);
    r
}

/// Asserts `actual` equals the file at `path`, or rewrites it with UPDATE_EXPECTED=1.
pub fn compare(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_EXPECTED").is_some_and(|v| v != "0") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{}: {e}; run `UPDATE_EXPECTED=1 cargo test -p quota-matrix` to create it", path.display())
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             If the change is intended: UPDATE_EXPECTED=1 cargo test -p quota-matrix, then review the diff.",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end of file>"),
            actual.lines().nth(line).unwrap_or("<end of output>"),
        );
    }
}
