//! `${ENV_VAR}` interpolation over every string of the parsed TOML tree, before typing.

use toml::Value;

/// Looks up an environment variable (the process environment, or a table in tests).
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces `${NAME}` in every string value; records one message per failing string.
pub(super) fn interpolate(
    value: &mut Value,
    env: Env<'_>,
    path: &mut String,
    errors: &mut Vec<String>,
) {
    match value {
        Value::String(text) if text.contains("${") => match expand(text, env) {
            Ok(expanded) => *text = expanded,
            Err(message) => errors.push(format!("{path}: {message}")),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(item, env, path, errors);
                path.truncate(len);
            }
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                interpolate(item, env, path, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn expand(text: &str, lookup: Env<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` in value".to_string())?;
        let name = &after[..end];
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!(
                "`${{{name}}}` is not a valid environment variable reference"
            ));
        }
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("environment variable `{name}` is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "WX_SECRET").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn expands_known_variables_anywhere_in_a_string() {
        assert_eq!(
            expand("a-${WX_SECRET}-b", &env).as_deref(),
            Ok("a-s3cr3t-b")
        );
        assert_eq!(expand("plain", &env).as_deref(), Ok("plain"));
    }

    #[test]
    fn names_the_missing_variable() {
        let err = expand("${NOPE_NOT_SET}", &env).unwrap_err();
        assert!(err.contains("NOPE_NOT_SET"), "{err}");
    }

    #[test]
    fn refuses_malformed_references() {
        assert!(expand("${", &env).is_err());
        assert!(expand("${}", &env).is_err());
        assert!(expand("${A B}", &env).is_err());
    }
}
