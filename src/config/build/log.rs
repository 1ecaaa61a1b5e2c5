//! `[log]`: the access log's format and whether it names the openid.

use super::Builder;
use crate::settings::LogSettings;

impl Builder<'_> {
    pub(super) fn log(&mut self, format: &str, openid: bool) -> Option<LogSettings> {
        let json = match format {
            "text" => false,
            "json" => true,
            other => {
                self.problem(
                    "log.format",
                    format!("`{other}` is not \"text\" or \"json\""),
                );
                return None;
            }
        };
        Some(LogSettings { json, openid })
    }
}
