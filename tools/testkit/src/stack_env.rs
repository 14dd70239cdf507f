//! The local stack's environment (the dotenv file `scripts/stack.sh` writes), as the bench, the
//! drills and the corpus use it: look a variable up, override a few, mint an access token.

pub type Env = Vec<(String, String)>;

/// The value of `key`; the stack always writes the variables the tools read, so a missing one
/// is a broken stack and worth stopping for.
pub fn get<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{key} in the stack env"))
}

/// `env` with `extra` set (replacing any earlier value of the same names).
pub fn with(env: &[(String, String)], extra: &[(&str, String)]) -> Env {
    let mut out: Env = env.iter().filter(|(k, _)| !extra.iter().any(|(e, _)| e == k)).cloned().collect();
    out.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    out
}

/// An access token for `user`, minted with the stack's JWT settings, as auth-refresh would.
pub fn bearer(env: &[(String, String)], user: &str) -> String {
    let mut reader = shared::config::EnvReader::from_fn(|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
    let settings = shared::auth::access::AccessTokenSettings::from_env(&mut reader);
    let tokens = shared::auth::AccessTokens::new(&settings);
    tokens.mint(&shared::auth::UserId::parse(user).expect("user id")).expect("mint")
}
