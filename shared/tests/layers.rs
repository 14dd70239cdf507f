//! Arrows point down only: no file under `src/mechanisms/` may name a feature, by any path
//! (`crate::posts`, `crate::features::…`, `super::super::features`, `shared::auth`).

use std::path::{Path, PathBuf};

const FEATURES: &[&str] = &["auth", "email", "payments", "posts", "uploads", "features"];

/// The first path segment(s) after each `crate::`, `shared::` or `super::super::` in `code`:
/// `crate::posts::X` → `posts`, `crate::{config, posts::X}` → `config`, `posts`.
fn named_modules(code: &str) -> Vec<&str> {
    fn ident(s: &str) -> &str {
        s.trim().split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("")
    }
    let mut names = Vec::new();
    for root in ["crate::", "shared::", "super::super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(root) {
            rest = &rest[at + root.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                names.extend(inner.split(',').map(|item| ident(item.trim())).filter(|n| !n.is_empty()));
            } else {
                names.push(ident(rest));
            }
        }
    }
    names
}

/// The `(line number, line)` pairs of `source` whose code (comments aside) names a feature.
fn feature_references(source: &str) -> Vec<(usize, String)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            named_modules(code).iter().any(|m| FEATURES.contains(m))
        })
        .map(|(n, line)| (n + 1, line.trim().to_owned()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_mechanism_imports_a_feature() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mechanisms");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 10, "found only {} mechanism files under {}", files.len(), root.display());
    let offences: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let name = f.strip_prefix(&root).unwrap().display().to_string();
            feature_references(&text).into_iter().map(move |(n, line)| format!("{name}:{n}: {line}"))
        })
        .collect();
    assert!(offences.is_empty(), "mechanisms must not name a feature:\n{}", offences.join("\n"));
}

#[test]
fn the_check_catches_every_way_of_naming_a_feature() {
    for offending in [
        "use crate::posts::PostId;",
        "let id: crate::auth::UserId = todo!();",
        "use crate::features::email::EmailJob;",
        "use super::super::features::payments;",
        "use crate::{config, uploads::UploadType};",
        "use crate::{posts, config};",
    ] {
        assert_eq!(feature_references(offending).len(), 1, "{offending}");
    }
    for fine in ["use crate::config::EnvReader;", "// see crate::posts for the caller", "use crate::{cache, clock};"] {
        assert!(feature_references(fine).is_empty(), "{fine}");
    }
}
