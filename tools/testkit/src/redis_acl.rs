//! The Redis ACL users of `template.yaml` (its `AWS::ElastiCache::User` resources), for local
//! redis-server processes: every server testkit starts loads them, so tests connect as the user
//! a function runs as and meet the same `NOPERM` refusals the deployed cache gives.
//!
//! The local `default` user stays on, without a password and with every right: it is the test's
//! own view from outside (redis-cli, `MEMORY USAGE`, `cluster create`). In the template it is off.

use std::path::{Path, PathBuf};

/// One user: its name and its access string, as the template declares them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclUser {
    pub name: String,
    pub access: String,
}

/// The local password of `user` (scripts/stack.sh uses the same rule).
pub fn password(user: &str) -> String {
    format!("dev-redis-password-{user}-0001")
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').trim_matches('\'').to_owned()
}

/// The enabled users of `template.yaml` with their access strings.
pub fn template_users() -> Vec<AclUser> {
    let text = std::fs::read_to_string(crate::workspace_root().join("template.yaml")).expect("template.yaml");
    parse_users(&text)
}

/// Splits the template into top-level resources (two-space indented keys) and reads each
/// ElastiCache user's `UserName` and `AccessString`.
pub fn parse_users(template: &str) -> Vec<AclUser> {
    let mut users = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    let mut flush = |block: &mut Vec<&str>| {
        if block.iter().any(|l| l.trim() == "Type: AWS::ElastiCache::User") {
            let field = |name: &str| {
                block.iter().find_map(|l| l.trim().strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(unquote))
            };
            if let (Some(name), Some(access)) = (field("UserName"), field("AccessString"))
                && access.split_whitespace().any(|t| t == "on")
            {
                users.push(AclUser { name, access });
            }
        }
        block.clear();
    };
    for line in template.lines() {
        let top = line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':');
        if top {
            flush(&mut block);
        }
        block.push(line);
    }
    flush(&mut block);
    users
}

/// Writes an ACL file for redis-server's `--aclfile`: the open local `default` user and every
/// template user with its local password.
pub fn write_acl_file(dir: &Path) -> PathBuf {
    let mut text = String::from("user default on nopass ~* &* +@all\n");
    for user in template_users() {
        text.push_str(&format!("user {} >{} {}\n", user.name, password(&user.name), user.access));
    }
    let path = dir.join("users.acl");
    std::fs::write(&path, text).expect("write the ACL file");
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_users_of_a_template() {
        let template = "Resources:\n  A:\n    Type: AWS::ElastiCache::User\n    Properties:\n      UserName: posts-read\n      AccessString: \"on ~post:* -@all +get\"\n  Off:\n    Type: AWS::ElastiCache::User\n    Properties:\n      UserName: default\n      AccessString: off -@all\n  B:\n    Type: AWS::SQS::Queue\n";
        assert_eq!(
            parse_users(template),
            [AclUser { name: "posts-read".into(), access: "on ~post:* -@all +get".into() }]
        );
    }

    #[test]
    fn the_template_has_a_user_for_each_function_that_uses_redis() {
        let names: Vec<String> = template_users().into_iter().map(|u| u.name).collect();
        for f in ["posts-read", "posts-write", "auth-refresh"] {
            assert!(names.iter().any(|n| n == f), "{f} in {names:?}");
        }
        for user in template_users() {
            for forbidden in ["+@all", "+flushall", "+flushdb", "+keys", "+config", "+@dangerous", "+@admin"] {
                assert!(!user.access.to_lowercase().contains(forbidden), "{}: {forbidden}", user.name);
            }
        }
    }
}
