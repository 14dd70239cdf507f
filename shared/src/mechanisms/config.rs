//! Typed settings read from the environment, once, at init.
//!
//! Every function builds its settings through an [`EnvReader`], which keeps reading after the first
//! bad variable so that one [`ConfigError`] names *every* missing or malformed variable and what it
//! expects. `main` prints that error and exits instead of panicking with a backtrace.
//! Secrets are wrapped in [`Secret`], whose `Debug` never shows the value. In AWS a secret's value
//! is never in the environment: the variable `<NAME>_SECRET_ARN` names a Secrets Manager secret,
//! read once at init ([`secrets`]) and handed out here as `<NAME>` ([`EnvReader::with_secrets`]).

pub mod secrets;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One variable that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The variable's name (`REDIS_URL`).
    pub variable: String,
    /// What a usable value looks like, as the operator should read it.
    pub expected: String,
    /// `None` when the variable was missing; otherwise why its value was refused (never the value
    /// itself, which may be a secret).
    pub reason: Option<String>,
}

/// Every variable that could not be used, in the order they were read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Each problem, in the order the variables were read.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.problems.len())?;
        for p in &self.problems {
            match &p.reason {
                None => writeln!(f, "  {} is missing; expected {}", p.variable, p.expected)?,
                Some(r) => writeln!(f, "  {} is invalid ({r}); expected {}", p.variable, p.expected)?,
            }
        }
        Ok(())
    }
}

/// A value that must never be logged. `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the environment.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself, for the one place that uses it (a key, a header); never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where variables come from: the process environment, or a map in tests.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads variables from a lookup function (the process environment in production, a map in tests)
/// and collects problems instead of stopping at the first one.
pub struct EnvReader<'a> {
    lookup: Lookup<'a>,
    problems: Vec<Problem>,
    secrets: secrets::LoadedSecrets,
}

impl Default for EnvReader<'static> {
    fn default() -> Self {
        Self::from_env()
    }
}

impl<'a> EnvReader<'a> {
    /// A reader over the process environment.
    pub fn from_env() -> EnvReader<'static> {
        EnvReader::from_fn(|k| std::env::var(k).ok())
    }

    /// A reader over fixed pairs instead of the process environment (tests, tools).
    pub fn from_pairs(vars: &[(&str, &str)]) -> EnvReader<'static> {
        let map: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EnvReader::from_fn(move |k| map.get(k).cloned())
    }

    /// A reader over any lookup (a map in tests). Values are trimmed; a blank one counts as unset.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self { lookup: Box::new(lookup), problems: Vec::new(), secrets: secrets::LoadedSecrets::default() }
    }

    /// The same reader, with the secrets read at init: a secret loaded for `NAME_SECRET_ARN` is
    /// the value of `NAME`, whatever the environment says of `NAME`.
    pub fn with_secrets(mut self, loaded: secrets::LoadedSecrets) -> Self {
        self.secrets = loaded;
        self
    }

    fn raw(&self, name: &str) -> Option<String> {
        let value = match self.secrets.get(name) {
            Some(secret) => Some(secret.to_owned()),
            None => (self.lookup)(name),
        };
        value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn problem(&mut self, name: &str, expected: &str, reason: Option<String>) {
        self.problems.push(Problem { variable: name.to_owned(), expected: expected.to_owned(), reason });
    }

    /// A required string. Returns an empty string (never used: `finish` fails) when missing.
    pub fn required(&mut self, name: &str, expected: &str) -> String {
        match self.raw(name) {
            Some(v) => v,
            None => {
                self.problem(name, expected, None);
                String::new()
            }
        }
    }

    /// A string, or `None` when unset or blank.
    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.raw(name)
    }

    /// A required value, kept as a [`Secret`]; empty (never used: `finish` fails) when missing.
    pub fn secret(&mut self, name: &str, expected: &str) -> Secret {
        Secret(self.required(name, expected))
    }

    /// A value parsed with `FromStr`, or `default` when the variable is unset.
    pub fn parsed_or<T: FromStr>(&mut self, name: &str, default: T, expected: &str) -> T
    where
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => default,
            Some(v) => match v.parse::<T>() {
                Ok(t) => t,
                Err(e) => {
                    self.problem(name, expected, Some(e.to_string()));
                    default
                }
            },
        }
    }

    /// An integer within `range`, or `default` when unset.
    pub fn int_in(&mut self, name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> u64 {
        let expected = format!("an integer from {} to {}", range.start(), range.end());
        let v = self.parsed_or(name, default, &expected);
        if range.contains(&v) {
            v
        } else {
            self.problem(name, &expected, Some("out of range".into()));
            default
        }
    }

    /// A duration given in whole milliseconds.
    pub fn millis(&mut self, name: &str, default_ms: u64, range: std::ops::RangeInclusive<u64>) -> Duration {
        Duration::from_millis(self.int_in(name, default_ms, range))
    }

    /// A duration given in whole seconds.
    pub fn seconds(&mut self, name: &str, default_s: u64, range: std::ops::RangeInclusive<u64>) -> Duration {
        Duration::from_secs(self.int_in(name, default_s, range))
    }

    /// A boolean (`1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, any case), or `default` when unset.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => true,
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => false,
            Some(_) => {
                self.problem(name, "true or false", Some("not a boolean".into()));
                default
            }
        }
    }

    /// A comma-separated list; empty entries are dropped.
    pub fn list(&mut self, name: &str) -> Vec<String> {
        self.raw(name)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default()
    }

    /// Records a problem found by a caller's own check (for example a URL with the wrong scheme).
    pub fn reject(&mut self, name: &str, expected: &str, reason: &str) {
        self.problem(name, expected, Some(reason.to_owned()));
    }

    /// Ends reading: `Ok(value)` when no problem was found.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() { Ok(value) } else { Err(ConfigError { problems: self.problems }) }
    }
}

/// A function's settings, read from the environment in one pass: every missing or invalid
/// variable is named in the one error (`env.finish`).
pub trait FromEnv: Sized {
    /// Reads every variable the function needs from `env` and ends with [`EnvReader::finish`].
    fn from_env(env: EnvReader<'_>) -> Result<Self, ConfigError>;
}

/// Prints a configuration error the way an operator reads it in CloudWatch, then exits (status 2).
/// Used by every `main` so a misconfigured function fails its init with one clear message.
pub fn exit_on_error<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(vars: &[(&str, &str)]) -> EnvReader<'static> {
        EnvReader::from_pairs(vars)
    }

    #[test]
    fn names_every_bad_variable_at_once() {
        let mut r = reader(&[("LIMIT", "abc"), ("FLAG", "maybe")]);
        r.required("TABLE", "a table name");
        r.int_in("LIMIT", 5, 1..=10);
        r.flag("FLAG", false);
        let err = r.finish(()).unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(names, ["TABLE", "LIMIT", "FLAG"]);
        let text = err.to_string();
        assert!(text.contains("TABLE is missing; expected a table name"), "{text}");
        assert!(text.contains("LIMIT is invalid"), "{text}");
    }

    #[test]
    fn out_of_range_integer_is_a_problem() {
        let mut r = reader(&[("N", "11")]);
        assert_eq!(r.int_in("N", 5, 1..=10), 5);
        assert!(r.finish(()).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let mut r = reader(&[("KEY", "hunter2")]);
        let s = r.secret("KEY", "a key");
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn lists_and_defaults() {
        let mut r = reader(&[("L", " a, ,b ")]);
        assert_eq!(r.list("L"), ["a", "b"]);
        assert_eq!(r.list("MISSING"), Vec::<String>::new());
        assert_eq!(r.seconds("S", 7, 1..=9), Duration::from_secs(7));
        assert!(r.finish(()).is_ok());
    }
}
