#!/usr/bin/env python3
"""Prints the HTTP routes as template.yaml and as the `cargo lambda watch` router (Cargo.toml)
declare them, per function binary, for tools/e2e/tests/routes.rs to compare with each
function's own route table.

Output (stdout, JSON): {"template": {binary: [[METHOD, PATH], ...]},
                        "watch": {binary: [[METHOD, PATH], ...]}}
"""
import json
import pathlib
import sys
import tomllib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from provision import load_template  # noqa: E402  (the same CloudFormation-aware YAML loader)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def template_routes(template):
    routes = {}
    for logical, res in template.get("Resources", {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary", logical)
        for event in (res.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                p = event.get("Properties", {})
                routes.setdefault(binary, []).append([p["Method"].upper(), p["Path"]])
    return routes


def watch_routes(cargo):
    router = cargo["workspace"]["metadata"]["lambda"]["watch"]["router"]
    routes = {}
    for path, entries in router.items():
        for entry in entries:
            routes.setdefault(entry["function"], []).append([entry["method"].upper(), path])
    return routes


def main():
    template = load_template(ROOT / "template.yaml")
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    json.dump({"template": template_routes(template), "watch": watch_routes(cargo)}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
