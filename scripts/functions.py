#!/usr/bin/env python3
"""The functions of the bundle, from template.yaml (the one place a function is declared), and the
checks that every other list of functions agrees with it (issue 30).

    python scripts/functions.py            prints each function's binary name, one a line
    python scripts/functions.py --check    prints what a function lacks elsewhere; exit 1 if anything

Each problem names the function, the missing piece and the step of docs/adding-a-function.md that
adds it. tests/functions runs the checks, and follows the checklist with a throwaway function.
"""
import importlib.util
import json
import pathlib
import re
import sys
import tomllib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from provision import load_template  # noqa: E402  (the CloudFormation-aware YAML loader)

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECKLIST = "docs/adding-a-function.md"


def functions(root=ROOT):
    """[{logical, binary, routes: [(METHOD, path)], url: bool, custom_resource: bool}] in template
    order. A custom-resource function (the ServiceToken of a Custom:: resource, with no event of its
    own) runs only during stack operations: it has no sample event and no benchmark."""
    template = load_template(pathlib.Path(root) / "template.yaml")
    service_tokens = {str(r.get("Properties", {}).get("ServiceToken")) for r in template.get("Resources", {}).values()
                      if str(r.get("Type", "")).startswith("Custom::")}
    found = []
    for logical, res in template.get("Resources", {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.get("Properties", {})
        routes = [(e["Properties"]["Method"].upper(), e["Properties"]["Path"])
                  for e in (props.get("Events") or {}).values() if e.get("Type") == "HttpApi"]
        found.append({
            "logical": logical,
            "binary": res.get("Metadata", {}).get("BuildProperties", {}).get("Binary", logical),
            "build": res.get("Metadata", {}).get("BuildMethod"),
            "routes": routes,
            "url": "FunctionUrlConfig" in props,
            "custom_resource": not props.get("Events") and "FunctionUrlConfig" not in props
            and any(logical in token for token in service_tokens),
        })
    return found


def _template_test_tables(root):
    """INTENDED_IAM and BINARIES of tests/template (the permissions contract, by hand)."""
    path = pathlib.Path(root) / "tests/template/test_translated_template.py"
    spec = importlib.util.spec_from_file_location(f"template_contract_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.INTENDED_IAM, module.BINARIES


def problems(root=ROOT):
    root = pathlib.Path(root)
    found = []

    def lack(fn, step, what):
        found.append(f"{fn['binary']} ({fn['logical']}): {what} [{CHECKLIST}, step '{step}']")

    fns = functions(root)
    iam, binaries = _template_test_tables(root)
    router = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["metadata"]["lambda"]["watch"]["router"]
    watch = {(r["method"].upper(), path, r["function"]) for path, rules in router.items() for r in rules}
    routes_rs = (root / "tools/e2e/tests/routes.rs").read_text()
    e2e_cargo = tomllib.loads((root / "tools/e2e/Cargo.toml").read_text()).get("dev-dependencies", {})
    openapi_text = (root / "openapi.yaml").read_text()
    manifest = json.loads((root / "events/manifest.json").read_text())
    listed = {e["event"] for e in manifest}
    bench = (root / "tools/bench/src/perf.rs").read_text()
    bench_list = re.search(r"pub const FUNCTIONS: \[&str; \d+\] =\s*\[([^\]]*)\]", bench)
    readme = (root / "README.md").read_text()

    for fn in fns:
        name = fn["binary"]
        crate = root / "functions" / name
        cargo = crate / "Cargo.toml"
        if not cargo.is_file():
            lack(fn, "crate", f"no crate: functions/{name}/Cargo.toml is missing")
        elif tomllib.loads(cargo.read_text())["package"]["name"] != name:
            lack(fn, "crate", f"functions/{name}/Cargo.toml's package name is not {name}")
        elif not (crate / "src/main.rs").is_file():
            lack(fn, "crate", f"functions/{name}/src/main.rs is missing")
        if fn["build"] != "rust-cargolambda":
            lack(fn, "template", "its template resource lacks Metadata.BuildMethod: rust-cargolambda")
        if fn["logical"] not in iam:
            lack(fn, "permissions", f"tests/template's INTENDED_IAM has no entry for {fn['logical']}")
        if binaries.get(name) != fn["logical"]:
            lack(fn, "permissions", f"tests/template's BINARIES does not map {name} to {fn['logical']}")
        for method, path in fn["routes"]:
            if (method, path, name) not in watch:
                lack(fn, "router", f"route {method} {path} is not in Cargo.toml's cargo lambda watch router")
        if fn["routes"]:
            if f'("{name}".to_owned()' not in routes_rs:
                lack(fn, "route-table", "tools/e2e/tests/routes.rs's tables() does not hold its ROUTES")
            if name not in e2e_cargo:
                lack(fn, "route-table", f"tools/e2e/Cargo.toml has no dev-dependency on {name}")
        if (fn["routes"] or fn["url"]) and f"x-function: {name}\n" not in openapi_text:
            lack(fn, "openapi", "openapi.yaml has no operation with x-function: " + name)
        events = sorted(p.relative_to(root / "events").as_posix() for p in (root / "events" / name).glob("*.json"))
        if not events and not fn["custom_resource"]:
            lack(fn, "events", f"no sample event under events/{name}/")
        for event in events:
            if event not in listed:
                lack(fn, "events", f"events/{event} is not in events/manifest.json")
        if not fn["custom_resource"] and (not bench_list or f'"{name}"' not in bench_list.group(1)):
            lack(fn, "bench", "tools/bench/src/perf.rs's FUNCTIONS does not name it")
        if not re.search(rf"^\| {re.escape(name)} \|", readme, re.M):
            lack(fn, "readme", "README.md's function table has no row for it")

    known = {fn["binary"] for fn in fns}
    for entry in manifest:
        if entry["function"] not in known:
            found.append(f"events/manifest.json names {entry['function']}, which template.yaml does not declare [{CHECKLIST}, step 'template']")
    return found


def main():
    if sys.argv[1:] == ["--check"]:
        found = problems()
        for p in found:
            print(p)
        sys.exit(1 if found else 0)
    for fn in functions():
        print(fn["binary"])


if __name__ == "__main__":
    main()
