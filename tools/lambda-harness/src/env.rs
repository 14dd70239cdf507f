//! Environment settings for a function: `KEY=VALUE` arguments and dotenv files.
//!
//! The dotenv dialect is the one `make dev` writes to `.dev/env`: one `KEY=VALUE` per line, blank
//! lines and `#` comments ignored, an optional `export ` prefix, values optionally in single quotes
//! (taken literally) or double quotes (`\n`, `\"`, `\\` escapes), and ` # comment` after an unquoted
//! value ignored.

use std::path::Path;

use crate::HarnessError;

/// Parses one `KEY=VALUE` setting; `origin` names where it came from, for the error message.
pub fn parse_assignment(text: &str, origin: &str) -> Result<(String, String), HarnessError> {
    let invalid = |reason: String| HarnessError::InvalidEnv { origin: origin.to_owned(), reason };
    let (key, value) = text.split_once('=').ok_or_else(|| invalid(format!("expected KEY=VALUE, got {text:?}")))?;
    let key = key.trim();
    validate_key(key).map_err(invalid)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Reads a dotenv file.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, HarnessError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| HarnessError::ReadFile { path: path.to_path_buf(), source })?;
    parse_dotenv(&text, &path.display().to_string())
}

/// Parses dotenv text; `origin` (usually the file name) prefixes error messages with the line number.
pub fn parse_dotenv(text: &str, origin: &str) -> Result<Vec<(String, String)>, HarnessError> {
    let mut settings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let invalid = |reason: String| HarnessError::InvalidEnv { origin: format!("{origin}:{}", index + 1), reason };
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let (key, value) = line.split_once('=').ok_or_else(|| invalid(format!("expected KEY=VALUE, got {raw:?}")))?;
        let key = key.trim();
        validate_key(key).map_err(invalid)?;
        let value = parse_value(value.trim()).map_err(invalid)?;
        settings.push((key.to_owned(), value));
    }
    Ok(settings)
}

fn validate_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let valid_start = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if valid_start && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("{key:?} is not a valid variable name"))
    }
}

fn parse_value(value: &str) -> Result<String, String> {
    if let Some(rest) = value.strip_prefix('\'') {
        let end = rest.find('\'').ok_or("unterminated single quote")?;
        check_trailing(&rest[end + 1..])?;
        return Ok(rest[..end].to_owned());
    }
    if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    check_trailing(&rest[at + 1..])?;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, other)) => out.push(other),
                    None => break,
                },
                other => out.push(other),
            }
        }
        return Err("unterminated double quote".into());
    }
    // An unquoted value ends at a comment introduced by whitespace.
    let value = match value.find(" #").or_else(|| value.find("\t#")) {
        Some(at) => value[..at].trim_end(),
        None => value,
    };
    Ok(value.to_owned())
}

fn check_trailing(rest: &str) -> Result<(), String> {
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected text after the closing quote: {rest:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_dialect() {
        let text = "# dev env\n\nAPI_URL=http://127.0.0.1:9000\nexport REDIS_URL = redis://127.0.0.1:6379/0 # local\n\
                    EMPTY=\nSINGLE='a # b'\nDOUBLE=\"x\\\"y\\nz\" # c\nEQ=a=b\n";
        let settings = parse_dotenv(text, ".dev/env").expect("valid file");
        let expected: Vec<(String, String)> = [
            ("API_URL", "http://127.0.0.1:9000"),
            ("REDIS_URL", "redis://127.0.0.1:6379/0"),
            ("EMPTY", ""),
            ("SINGLE", "a # b"),
            ("DOUBLE", "x\"y\nz"),
            ("EQ", "a=b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(settings, expected);
    }

    #[test]
    fn dotenv_errors_name_the_line() {
        let error = parse_dotenv("A=1\nnot a setting\n", "f.env").expect_err("line 2 is invalid");
        assert!(error.to_string().starts_with("f.env:2:"), "{error}");
        assert!(parse_dotenv("1A=x", "f").is_err());
        assert!(parse_dotenv("A=\"open", "f").is_err());
    }

    #[test]
    fn assignments() {
        assert_eq!(parse_assignment("K=v=w", "--env").expect("valid"), ("K".into(), "v=w".into()));
        assert!(parse_assignment("novalue", "--env").is_err());
        assert!(parse_assignment("=v", "--env").is_err());
    }
}
