//! One route table: `template.yaml` is the contract; each function's `ROUTES` (which its
//! handler dispatches on and builds its `Allow` headers from) and the `cargo lambda watch`
//! router in Cargo.toml (`make dev`) must say exactly the same.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use e2e::stack::root;

type Table = BTreeMap<String, BTreeSet<(String, String)>>;

/// `scripts/routes.py`: the template's routes and the watch router's, per function binary.
fn declared() -> (Table, Table) {
    let python = root().join(".venv/bin/python");
    let out = Command::new(python).arg(root().join("scripts/routes.py")).output().expect("run scripts/routes.py");
    assert!(out.status.success(), "routes.py: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("routes.py prints JSON");
    let table = |key: &str| -> Table {
        v[key]
            .as_object()
            .expect("an object per function")
            .iter()
            .map(|(function, routes)| {
                let pairs = routes
                    .as_array()
                    .expect("a list of routes")
                    .iter()
                    .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().to_owned()))
                    .collect();
                (function.clone(), pairs)
            })
            .collect()
    };
    (table("template"), table("watch"))
}

fn owned(pairs: Vec<(&str, &str)>) -> BTreeSet<(String, String)> {
    pairs.into_iter().map(|(m, p)| (m.to_owned(), p.to_owned())).collect()
}

/// Each HTTP function's own table, as its handler dispatches on it.
fn tables() -> Table {
    BTreeMap::from([
        ("posts-read".to_owned(), owned(posts_read::handler::ROUTES.pairs())),
        ("posts-write".to_owned(), owned(posts_write::handler::ROUTES.pairs())),
        ("auth-refresh".to_owned(), owned(auth_refresh::handler::ROUTES.pairs())),
        ("upload-presign".to_owned(), owned(upload_presign::handler::ROUTES.pairs())),
    ])
}

#[test]
fn every_function_serves_exactly_the_routes_the_template_gives_it() {
    let (template, _) = declared();
    assert_eq!(tables(), template);
}

#[test]
fn the_watch_router_sends_every_route_where_the_template_does() {
    let (template, watch) = declared();
    let without_options: Table = watch
        .iter()
        .map(|(f, routes)| (f.clone(), routes.iter().filter(|(m, _)| m != "OPTIONS").cloned().collect()))
        .filter(|(_, routes): &(String, BTreeSet<_>)| !routes.is_empty())
        .collect();
    assert_eq!(without_options, template);

    // A preflight (OPTIONS) of each path goes to one function that serves that path: the
    // preflight speaks for the path, whichever function serves the actual method.
    let paths: BTreeSet<&String> = template.values().flatten().map(|(_, p)| p).collect();
    for path in paths {
        let to: Vec<&String> = watch
            .iter()
            .filter(|(_, routes)| routes.contains(&("OPTIONS".to_owned(), path.clone())))
            .map(|(f, _)| f)
            .collect();
        assert_eq!(to.len(), 1, "OPTIONS {path} goes to {to:?}");
        assert!(
            template[to[0]].iter().any(|(_, p)| p == path),
            "OPTIONS {path} goes to {}, which does not serve it",
            to[0]
        );
    }
}
