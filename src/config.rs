//! Quiver's configuration: defaults that run embedded, overridden by a TOML
//! file (`--config`), then by command-line flags. Unknown keys are an error.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the catalog and table data live.
    pub data_dir: PathBuf,
    /// Address the Postgres wire protocol listens on.
    pub listen: String,
    /// Log filter, e.g. `info` or `quiver_sql=debug,info` (Lance's own info-level
    /// audit of every file it writes is left out by default).
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./quiver-data"),
            listen: "127.0.0.1:5433".into(),
            log_level: "info,lance=warn".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
}

impl Config {
    pub fn from_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.message().to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_toml(&text, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml("listen = \"127.0.0.1:6000\"", "t").expect("parse");
        assert_eq!(c.listen, "127.0.0.1:6000");
        assert_eq!(c.data_dir, PathBuf::from("./quiver-data"));
        let e = Config::from_toml("listn = \"x\"", "t").expect_err("unknown key");
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
