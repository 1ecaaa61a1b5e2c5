//! Loading `gateway.toml`: parse, interpolate `${ENV}`, type, then validate into [`Settings`].
//!
//! Syntax and structure errors (TOML syntax, unknown keys, wrong types) stop at the first
//! one, with its line and column or key path; every semantic problem after that is
//! reported at once, each with the path of the key it concerns.

mod admin;
mod build;
pub mod duration;
pub mod file;
mod interp;
mod store;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::settings::Settings;

#[derive(Debug)]
pub enum ConfigError {
    Read { path: PathBuf, message: String },
    Syntax(String),
    Invalid(Vec<String>),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, message } => {
                write!(f, "cannot read {}: {message}", path.display())
            }
            Self::Syntax(message) => write!(f, "{message}"),
            Self::Invalid(problems) => {
                let noun = if problems.len() == 1 {
                    "problem"
                } else {
                    "problems"
                };
                writeln!(f, "invalid configuration ({} {noun}):", problems.len())?;
                for p in problems {
                    writeln!(f, "  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Loads and validates a config file; relative `*_file` paths resolve against its folder.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut settings = from_str(&text, base)?;
    settings.source = Some(path.to_path_buf());
    Ok(settings)
}

/// Validates config text; `base` is the folder relative file paths resolve against.
pub fn from_str(text: &str, base: &Path) -> Result<Settings, ConfigError> {
    from_str_with_env(text, base, &|name| std::env::var(name).ok())
}

/// [`from_str`] with `${NAME}` looked up in `env` instead of the process environment.
pub fn from_str_with_env(
    text: &str,
    base: &Path,
    env: interp::Env<'_>,
) -> Result<Settings, ConfigError> {
    let mut value: toml::Value = toml::from_str::<toml::Table>(text)
        .map(toml::Value::Table)
        .map_err(|e| ConfigError::Syntax(format!("TOML syntax error: {e}")))?;
    let mut problems = Vec::new();
    interp::interpolate(&mut value, env, &mut String::new(), &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    let file: file::FileConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = inner.lines().next().unwrap_or_default().trim().to_string();
        if path == "." {
            ConfigError::Invalid(vec![message])
        } else {
            ConfigError::Invalid(vec![format!("{path}: {message}")])
        }
    })?;
    build::build(file, base).map_err(ConfigError::Invalid)
}

#[cfg(test)]
mod tests;
