use super::checked::Config;
use super::error::ConfigError;
use super::raw::RawConfig;
use super::read::FromNode;
use super::tree::Node;

impl Config {
    /// Parses and validates the filter's JSON configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::new(".", "the configuration is empty: the filter needs its JSON configuration"));
        }
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ConfigError::new(".", "the configuration must be a JSON object"));
        }
        // The text as a tree first (syntax errors located by line and
        // column), then its shape, read with the path of every value.
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let tree: Node = serde::Deserialize::deserialize(&mut de)
            .map_err(|e| ConfigError::new(super::locate::error_path(bytes, &e), e.to_string()))?;
        de.end().map_err(|e| ConfigError::new(".", e.to_string()))?;
        Config::try_from(RawConfig::from_node(&tree, ".")?)
    }
}
