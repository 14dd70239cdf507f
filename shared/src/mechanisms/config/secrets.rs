//! Secrets from AWS Secrets Manager, read once per execution environment, at init.
//!
//! The template gives a function, for each secret it uses, only the secret's ARN: the variable
//! `<NAME>_SECRET_ARN`. Before the settings are built ([`crate::runtime`]), [`load_from_env`] reads
//! every such secret once (GetSecretValue, through the shared `SdkConfig`), and the
//! [`EnvReader`](super::EnvReader) then hands out each value as the variable `<NAME>`: the settings
//! code reads `REFRESH_TOKEN_SECRET` the same way whether a local run set it or the function's own
//! secret holds it, and no value is ever in the function's configuration.
//!
//! A secret that cannot be read fails init: one error naming the variable, the secret and the
//! permission it needs (Lambda logs it and retries the init), never a default.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};

/// The suffix of a variable that names a secret instead of holding a value.
pub const ARN_SUFFIX: &str = "_SECRET_ARN";

/// Why a secret could not be read at init.
#[derive(Debug)]
pub struct SecretError {
    /// The variable whose value the secret holds (`REFRESH_TOKEN_SECRET`).
    pub variable: String,
    /// The secret's ARN (or name), as the environment gave it.
    pub secret_id: String,
    /// What went wrong.
    pub cause: SecretCause,
}

/// What went wrong reading one secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretCause {
    /// Secrets Manager refused or failed the call (denied, not found, unreachable).
    #[error("{0}")]
    Call(String),
    /// The secret exists but holds no text (a binary secret, or none yet).
    #[error("the secret has no SecretString")]
    NoText,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secret for {} ({}) could not be read at init: {}; the function's role needs \
             secretsmanager:GetSecretValue on it",
            self.variable, self.secret_id, self.cause
        )
    }
}

impl std::error::Error for SecretError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// The secrets read at init: variable name -> value. Never printed (`Debug` shows names only).
#[derive(Clone, Default)]
pub struct LoadedSecrets(HashMap<String, String>);

impl fmt::Debug for LoadedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl LoadedSecrets {
    /// The value of the secret behind `<variable>_SECRET_ARN`, if one was read.
    pub fn get(&self, variable: &str) -> Option<&str> {
        self.0.get(variable).map(String::as_str)
    }

    /// How many secrets were read.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no secret was read (a function without secrets, or a local run).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The variables of `vars` that name a secret: (`NAME`, secret id) for each `NAME_SECRET_ARN`.
pub fn secret_variables(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<_> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_suffix(ARN_SUFFIX)?;
            let id = v.trim();
            (!name.is_empty() && !id.is_empty()).then(|| (name.to_owned(), id.to_owned()))
        })
        .collect();
    out.sort();
    out
}

/// The service's own code and message (`AccessDeniedException: ...`); the whole cause chain when
/// the call never got an answer (no network, no credentials).
fn reason<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(e).to_string(),
    }
}

/// Reads each (`NAME`, secret id) once, all at the same time; the first that fails is the error.
pub async fn load(
    client: &aws_sdk_secretsmanager::Client,
    wanted: Vec<(String, String)>,
) -> Result<LoadedSecrets, SecretError> {
    let reads = wanted.into_iter().map(|(variable, secret_id)| async move {
        let fail = |cause| SecretError { variable: variable.clone(), secret_id: secret_id.clone(), cause };
        let answer = client
            .get_secret_value()
            .secret_id(&secret_id)
            .send()
            .await
            .map_err(|e| fail(SecretCause::Call(reason(&e))))?;
        let value = answer.secret_string.ok_or_else(|| fail(SecretCause::NoText))?;
        Ok::<_, SecretError>((variable, value))
    });
    Ok(LoadedSecrets(futures::future::try_join_all(reads).await?.into_iter().collect()))
}

/// [`load`] for every `*_SECRET_ARN` variable of the process environment, through the shared
/// `SdkConfig`. No such variable: nothing is loaded and no client is built.
pub async fn load_from_env() -> Result<LoadedSecrets, SecretError> {
    let wanted = secret_variables(std::env::vars());
    if wanted.is_empty() {
        return Ok(LoadedSecrets::default());
    }
    let sdk = crate::clients::aws::shared_sdk_config().await;
    load(&aws_sdk_secretsmanager::Client::new(&sdk), wanted).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_variables_ending_in_secret_arn_name_secrets() {
        let vars = [
            ("REFRESH_TOKEN_SECRET_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:1:secret:r"),
            ("POSTS_TABLE", "posts"),
            ("_SECRET_ARN", "x"),
            ("EMPTY_SECRET_ARN", " "),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            secret_variables(vars),
            [("REFRESH_TOKEN_SECRET".to_owned(), "arn:aws:secretsmanager:eu-west-1:1:secret:r".to_owned())]
        );
    }

    #[test]
    fn the_error_names_the_variable_the_secret_and_the_permission() {
        let e = SecretError {
            variable: "POSTS_CURSOR_SECRET".into(),
            secret_id: "arn:aws:secretsmanager:eu-west-1:1:secret:c".into(),
            cause: SecretCause::Call("AccessDeniedException".into()),
        };
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        for part in [
            "POSTS_CURSOR_SECRET",
            "arn:aws:secretsmanager:eu-west-1:1:secret:c",
            "secretsmanager:GetSecretValue",
            "AccessDenied",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }
}
