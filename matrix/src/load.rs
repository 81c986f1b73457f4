//! Reading a config file the way the filter reads its configuration.

use quota_core::config::Config;
use serde_json::Value;

/// A config file that passed the filter's own validation.
pub struct Loaded {
    /// The path as given on the command line.
    pub path: String,
    pub config: Config,
    /// The same document as plain JSON, for what the checked config no longer
    /// shows (a `warn_at` fraction that was dropped, a glob's text).
    pub raw: Value,
}

/// Reads and checks `path`; the error is the line to print.
pub fn load(path: &str) -> Result<Loaded, String> {
    let bytes = read(path)?;
    let config = Config::from_json(&bytes).map_err(|e| format!("{path}: invalid configuration: {e}"))?;
    let raw = serde_json::from_slice(&bytes).map_err(|e| format!("{path}: invalid configuration: {e}"))?;
    Ok(Loaded { path: path.to_string(), config, raw })
}

/// A file's bytes, or standard input for `-`.
pub fn read(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {}", io_reason(&e)))
}

/// "no such file", without Rust's "(os error 2)".
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        _ => e.to_string(),
    }
}
