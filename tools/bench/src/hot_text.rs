//! `bench hot-text`: which functions a cold start and its first invocation execute, recorded under
//! valgrind's callgrind for every sample event of every function, written as the linker scripts
//! of `layout/hot-text/` (layout/build.rs says why they exist).
//!
//! Each sample event runs in a fresh process (init plus one invocation: what a cold start pages
//! in). The process is stopped with SIGTERM so that callgrind writes its profile on the way out.
//! The default environment only: recording `AWS_LAMBDA_MAX_CONCURRENCY`'s multi-threaded runtime
//! as well made the default path's `.text.hot` larger without lowering the concurrent RSS
//! (BENCHMARKS.md).
//! Only the names of executed functions are kept; callgrind's costs are not used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lambda_harness::{Function, SpawnOptions};
use serde_json::Value;

/// Valgrind runs code some 50 times slower; this only bounds a hung process.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The functions `bin` executes over one cold start per event, as callgrind names them (mangled).
async fn executed(bin: &Path, env: &[(String, String)], events: &[Value], scratch: &Path) -> BTreeSet<String> {
    // The wrapper runs in the harness's task root, so the binary is named by its absolute path.
    let bin = &std::fs::canonicalize(bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let name = bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let out = scratch.join(format!("{name}.callgrind"));
    // The harness starts one program: a wrapper that execs valgrind keeps the pid the harness sees.
    let wrapper = scratch.join(&name);
    let script = format!(
        "#!/bin/sh\nexec valgrind --tool=callgrind --demangle=no --dump-line=no --compress-strings=no \
         --callgrind-out-file={} {}\n",
        out.display(),
        bin.display()
    );
    std::fs::write(&wrapper, script).expect("write the valgrind wrapper");
    make_executable(&wrapper);
    let options = SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() };
    let mut names = BTreeSet::new();
    for event in events {
        let _ = std::fs::remove_file(&out);
        let f = Function::start(&wrapper, &options).await.expect("spawn under valgrind");
        f.wait_ready(TIMEOUT).await.expect("init under valgrind");
        // The answer does not matter (an error path is code too); only that it ran.
        let _ = f.invoke(event, TIMEOUT).await;
        f.terminate(TIMEOUT).await;
        let profile = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        names.extend(function_names(&profile));
    }
    names
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod the wrapper");
}

/// The symbols of a callgrind profile's `fn=` / `cfn=` lines (`(id) name` once, `(id)` after):
/// Rust's and C's (aws-lc, `main`). Callgrind's own names (`(below main)`, `0x…`) and its
/// recursion marks (`'2`) go; libc's names stay, and match nothing in the link.
fn function_names(profile: &str) -> impl Iterator<Item = String> + '_ {
    profile.lines().filter_map(|line| {
        let rest = line.strip_prefix("fn=").or_else(|| line.strip_prefix("cfn="))?.trim();
        let name = match rest.strip_prefix('(') {
            Some(tail) => tail.split_once(')')?.1.trim(),
            None => rest,
        };
        let name = name.split_once('\'').map_or(name, |(head, _)| head);
        let symbol = !name.is_empty()
            && !name.starts_with("0x")
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_$.".contains(&b));
        symbol.then(|| name.to_owned())
    })
}

/// A section pattern for `symbol` that any build of the same code matches: the parts of a mangled
/// name that change with the build (legacy `17h<hash>E`, v0 crate disambiguators `Cs<id>_` and
/// the back-references whose offsets follow them, LTO's `.llvm.<n>` and `.<n>` suffixes) become `*`.
pub fn pattern(symbol: &str) -> String {
    let mut base = symbol;
    let mut suffixed = false;
    if let Some(i) = base.find(".llvm.") {
        base = &base[..i];
        suffixed = true;
    }
    while let Some((head, tail)) = base.rsplit_once('.') {
        if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        base = head;
        suffixed = true;
    }
    let mut out = if base.starts_with("_ZN") {
        legacy(base)
    } else if base.starts_with("_R") {
        v0(base)
    } else {
        base.to_owned() // C: aws-lc's names carry its version, nothing per build
    };
    if suffixed && !out.ends_with('*') {
        out.push('*');
    }
    out
}

/// `_ZN...17h0123456789abcdefE` → `_ZN...17h*E`.
fn legacy(symbol: &str) -> String {
    match symbol.len().checked_sub(20).map(|i| symbol.split_at(i)) {
        Some((head, hash))
            if hash.starts_with("17h") && hash.ends_with('E') && hash[3..19].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            format!("{head}17h*E")
        }
        _ => symbol.to_owned(),
    }
}

/// v0: `Cs<base62>_` and `B<base62>_` → `Cs*_` and `B*_`. Identifiers are length-prefixed, so
/// they are copied whole and never rewritten.
fn v0(symbol: &str) -> String {
    let bytes = symbol.as_bytes();
    let mut out = String::with_capacity(symbol.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            // <decimal length>[_]<identifier>
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let len: usize = symbol[start..i].parse().unwrap_or(0);
            if i < bytes.len() && bytes[i] == b'_' {
                i += 1;
            }
            let end = (i + len).min(bytes.len());
            out.push_str(&symbol[start..end]);
            i = end;
        } else if let Some(tag) = [&b"Cs"[..], &b"B"[..]].into_iter().find(|t| bytes[i..].starts_with(t)) {
            let mut j = i + tag.len();
            while j < bytes.len() && bytes[j].is_ascii_alphanumeric() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'_' {
                out.push_str(std::str::from_utf8(tag).unwrap_or_default());
                out.push_str("*_");
                i = j + 1;
            } else {
                out.push(c as char);
                i += 1;
            }
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

/// The linker script of one function.
fn script(function: &str, command: &str, patterns: &BTreeSet<String>) -> String {
    let mut s = format!(
        "/* {function}: the functions a cold start and its first invocation execute, one sample event\n   \
         per process, first in .text\n   \
         (layout/build.rs says why). Generated by `{command}`;\n   \
         {} patterns. */\nSECTIONS\n{{\n  .text.hot : {{\n",
        patterns.len()
    );
    for p in patterns {
        // LLVM puts `#[cold]` functions (hashbrown's rehash, `Once::call`, most slow paths of
        // one-time initialisation) in `.text.unlikely.<name>`; a cold start runs them all once.
        s.push_str(&format!("    *(.text.{p} .text.unlikely.{p})\n"));
    }
    s.push_str("  }\n}\nINSERT BEFORE .text;\n");
    s
}

/// Every `*.json` of `dir`, sorted by name.
fn events_of(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

pub async fn run(bin_dir: &Path, env: &[(String, String)], events: &Path, out_dir: &Path, command: &str) {
    let scratch = std::env::temp_dir().join(format!("hot-text.{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    std::fs::create_dir_all(out_dir).expect("out dir");
    for function in crate::perf::FUNCTIONS {
        let samples = events_of(&events.join(function));
        let names = executed(&bin_dir.join(function), env, &samples, &scratch).await;
        let patterns: BTreeSet<String> = names.iter().map(|n| pattern(n)).collect();
        let path = out_dir.join(format!("{function}.ld"));
        std::fs::write(&path, script(function, command, &patterns)).expect("write the linker script");
        println!(
            "{function}: {} events, {} functions, {} patterns → {}",
            samples.len(),
            names.len(),
            patterns.len(),
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_hashes_and_lto_suffixes_become_wildcards() {
        assert_eq!(pattern("_ZN5tokio7runtime4park17h0123456789abcdefE"), "_ZN5tokio7runtime4park17h*E");
        assert_eq!(pattern("_ZN3foo3bar17h0123456789abcdefE.llvm.1234"), "_ZN3foo3bar17h*E*");
        assert_eq!(pattern("_ZN3foo3bar17h0123456789abcdefE.18"), "_ZN3foo3bar17h*E*");
    }

    #[test]
    fn v0_disambiguators_and_back_references_become_wildcards_but_identifiers_do_not() {
        assert_eq!(
            pattern("_RNvNtNtCsjrHSEGnQ3l9_3std6thread7current12init_current"),
            "_RNvNtNtCs*_3std6thread7current12init_current"
        );
        // "B" and "Cs" inside identifiers (4Bxy_, 6Csv_ab) are left alone; the back-reference is not.
        assert_eq!(pattern("_RNvMs_NtCsab1_4Bxy_6Csv_abB4_3new"), "_RNvMs_NtCs*_4Bxy_6Csv_abB*_3new");
        assert_eq!(pattern("aws_lc_0_47_0_BN_mul"), "aws_lc_0_47_0_BN_mul");
    }

    #[test]
    fn callgrind_names_are_read_from_fn_and_cfn_lines() {
        let profile = "fn=(1) _ZN1a1b17h0123456789abcdefE\ncfn=(2) _RNvCs1_1a1c'2\nfn=(1)\nfn=memcpy\n\
                       cfn=_ZN1x17h0123456789abcdefE\nfn=(3) (below main)\nfn=0x0000000000401000\ncalls=1 0\n";
        let names: Vec<String> = function_names(profile).collect();
        assert_eq!(names, ["_ZN1a1b17h0123456789abcdefE", "_RNvCs1_1a1c", "memcpy", "_ZN1x17h0123456789abcdefE"]);
    }
}
