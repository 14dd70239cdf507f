#!/usr/bin/env python3
"""Writes what `sam local invoke` / `start-lambda` / `start-api` need, generated from template.yaml
and the local stack (scripts/stack.sh up): a local copy of the template, an --env-vars file and the
parameter overrides.

The local template differs from template.yaml only where a local run must:
  - Architectures x86_64 (this machine's bootstraps, built by cargo), CodeUri one folder per
    function (`<code-dir>/<binary>/bootstrap`), no BuildMethod metadata (nothing to build);
  - no VpcConfig (there is no VPC locally; SAM ignores it anyway);
  - every variable of the stack's environment declared on the function that reads it, plus
    AWS_ENDPOINT_URL: `--env-vars` can only set keys the template declares; a secret's
    <NAME>_SECRET_ARN is emptied where the stack gives <NAME> its local value;
  - the HTTP API's CorsConfiguration with the stack's origins written out (the same list the
    AllowedOrigins parameter gets in AWS), so `sam local start-api` answers preflights like API
    Gateway does.
Routes, events, memory, timeouts and the rest stay as they are: they are what is exercised.

Addresses: the containers reach this machine's loopback through slirp4netns' host-loopback
address (allow_host_loopback), so the stack's own listeners (127.0.0.1:PORT for each --port) are
rewritten to --host-address:PORT. Other values (the browser origins) stay as they are.
"""
import argparse
import copy
import json
import os
import shlex
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from provision import load_template  # noqa: E402  (the same CloudFormation-aware loader)


class _Dumper(yaml.SafeDumper):
    """Dumps {"Ref": x} / {"Fn::X": y} back as the short-form tags SAM reads."""


def _represent_dict(dumper, data):
    if len(data) == 1:
        (key, value), = data.items()
        if key == "Ref" or key == "Condition":
            return dumper.represent_scalar(f"!{key}", value)
        if isinstance(key, str) and key.startswith("Fn::"):
            tag = "!" + key[4:]
            if key == "Fn::GetAtt" and isinstance(value, list):
                return dumper.represent_scalar(tag, ".".join(value))
            if isinstance(value, list):
                return dumper.represent_sequence(tag, value)
            if isinstance(value, dict):
                return dumper.represent_mapping(tag, value)
            return dumper.represent_scalar(tag, value)
    return dumper.represent_dict(data)


_Dumper.add_representer(dict, _represent_dict)


def functions(template):
    for logical, res in template["Resources"].items():
        if res.get("Type") == "AWS::Serverless::Function":
            binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary", logical)
            yield logical, binary, res


def local_template(template, stack_env, code_dir, origins):
    t = copy.deepcopy(template)
    glob = t.setdefault("Globals", {}).setdefault("Function", {})
    glob["Architectures"] = ["x86_64"]
    glob.pop("CodeUri", None)
    for _logical, binary, res in functions(t):
        res.pop("Metadata", None)
        props = res.setdefault("Properties", {})
        props["CodeUri"] = os.path.join(code_dir, binary)
        props.pop("VpcConfig", None)
        variables = props.setdefault("Environment", {}).setdefault("Variables", {})
        for key in sorted(stack_env.get(binary, {})) + ["AWS_ENDPOINT_URL"]:
            variables.setdefault(key, "set-by-env-vars")
        # A secret the stack makes in AWS reaches the function as <NAME>_SECRET_ARN, read at init;
        # locally its value comes as <NAME> through --env-vars, and an empty ARN is no secret to
        # read (SAM would pass an unresolved Ref as the logical id, which init would try to read).
        for key in list(variables):
            if key.endswith("_SECRET_ARN") and key[: -len("_SECRET_ARN")] in stack_env.get(binary, {}):
                variables[key] = ""
    for res in t["Resources"].values():
        if res.get("Type") == "AWS::Serverless::HttpApi":
            cors = res.get("Properties", {}).get("CorsConfiguration")
            if cors:
                cors["AllowOrigins"] = list(origins)
    return t


def env_vars(template, stack_env, endpoint, host_address, ports):
    """{LogicalId: {VAR: value}}, the stack's listeners at the address containers reach them by."""
    def local(value):
        value = str(value)
        for port in ports:
            value = value.replace(f"127.0.0.1:{port}", f"{host_address}:{port}")
        return value

    out = {}
    for logical, binary, _res in functions(template):
        env = {k: local(v) for k, v in stack_env.get(binary, {}).items()}
        env["AWS_ENDPOINT_URL"] = local(endpoint)
        out[logical] = env
    return out


def parameter_values(template, given):
    values = dict(p.split("=", 1) for p in given)
    for name, spec in template.get("Parameters", {}).items():
        if name in values or "Default" in spec:
            continue
        # Placeholders of the right shape for what only AWS uses (the VPC, for example).
        kind = spec.get("Type", "")
        values[name] = {"AWS::EC2::VPC::Id": "vpc-00000000", "List<AWS::EC2::Subnet::Id>": "subnet-00000000"}.get(
            kind, "local-placeholder")
    return values


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default="template.yaml")
    ap.add_argument("--functions-json", required=True, help="scripts/stack.sh's DIR/functions.json")
    ap.add_argument("--endpoint", required=True, help="the stack's AWS endpoint (moto), as the host sees it")
    ap.add_argument("--origins", required=True, help="comma-separated allowed origins")
    ap.add_argument("--code-dir", required=True)
    ap.add_argument("--host-address", required=True, help="the address containers reach the host's loopback at")
    ap.add_argument("--port", action="append", default=[], help="a stack listener's loopback port (repeatable)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a template parameter's value")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()

    template = load_template(args.template)
    stack_env = json.load(open(args.functions_json, encoding="utf-8"))["functions"]
    origins = [o.strip() for o in args.origins.split(",") if o.strip()]
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "template.yaml"), "w", encoding="utf-8") as f:
        yaml.dump(local_template(template, stack_env, os.path.abspath(args.code_dir), origins), f,
                  Dumper=_Dumper, sort_keys=False, width=1000)
    with open(os.path.join(args.out_dir, "env-vars.json"), "w", encoding="utf-8") as f:
        json.dump(env_vars(template, stack_env, args.endpoint, args.host_address, args.port), f, indent=1, sort_keys=True)
    # Binary -> logical id, and the binaries the HTTP API routes to, for the runner.
    with open(os.path.join(args.out_dir, "functions.json"), "w", encoding="utf-8") as f:
        json.dump({binary: logical for logical, binary, _ in functions(template)}, f, indent=1)
    routed = [binary for _l, binary, res in functions(template)
              if any(e.get("Type") == "HttpApi" for e in (res.get("Properties", {}).get("Events") or {}).values())]
    with open(os.path.join(args.out_dir, "http-functions.json"), "w", encoding="utf-8") as f:
        json.dump(routed, f)
    cors = next(res["Properties"]["CorsConfiguration"] for res in template["Resources"].values()
                if res.get("Type") == "AWS::Serverless::HttpApi")
    with open(os.path.join(args.out_dir, "cors.json"), "w", encoding="utf-8") as f:
        json.dump(dict(cors, AllowOrigins=origins), f)
    # Every parameter without a default needs a value, even those no local function reads.
    with open(os.path.join(args.out_dir, "parameters"), "w", encoding="utf-8") as f:
        f.write(" ".join(f"{k}={shlex.quote(v)}" for k, v in parameter_values(template, args.param).items()) + "\n")


if __name__ == "__main__":
    main()
