#!/usr/bin/env python3
"""The deploy path's own commands, run against MiniStack (scripts/deploy-rehearsal.sh starts it).

The steps are read from .github/workflows/deploy.yml, .github/workflows/rollback.yml and the
composite action .github/actions/sam-deploy/action.yml, so an edit there is what gets rehearsed.
`${{ ... }}` expressions are filled from tests/deploy/workflow-inputs.json (what GitHub would hand
the workflow). Steps that only install tools (pip install, rustup) are skipped: the rehearsal runs
with the project's .venv. `uses:` steps are played by small stand-ins (ACTIONS below).

  deploy_rehearsal.py build WORK           the package job up to its AWS credentials (sam build),
                                           outside the network namespace (cargo needs its cache)
  deploy_rehearsal.py run WORK ENDPOINT    the rest, inside it: package, deploy staging and prod,
                                           a changed parameter, rollback, tamper, mutation checks

Where MiniStack lacks a resource type, the rehearsal's copy of the built template swaps in a
stand-in (STAND_INS below; docs/first-deploy.md lists each with why).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_WORKFLOW = ROOT / ".github/workflows/deploy.yml"
ROLLBACK_WORKFLOW = ROOT / ".github/workflows/rollback.yml"
DEPLOY_ACTION = ROOT / ".github/actions/sam-deploy/action.yml"
FIXTURE = ROOT / "tests/deploy/workflow-inputs.json"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": "rehearsal"}


# ------------------------------------------------------------------ stand-ins
@dataclass(frozen=True)
class StandIn:
    """A resource type MiniStack cannot create, replaced by a WaitConditionHandle (which creates
    nothing and accepts any DependsOn). `attributes` are the literals its Fn::GetAtt become."""

    why: str
    attributes: dict[str, str] = field(default_factory=dict)
    # Only resources of the type this holds for (all of them when None): MiniStack refuses one
    # shape of a type it otherwise creates.
    when: Callable[[dict], bool] | None = None


# One line per type: add a type here when MiniStack refuses it, and say why in docs/first-deploy.md.
STAND_INS: dict[str, StandIn] = {
    "AWS::EC2::SecurityGroupEgress": StandIn("MiniStack's CloudFormation has no handler for it"),
    "AWS::EC2::SecurityGroupIngress": StandIn("MiniStack's CloudFormation has no handler for it"),
    "AWS::ElastiCache::ServerlessCache": StandIn(
        "MiniStack's CloudFormation has no handler for it",
        {"Endpoint.Address": "cache.rehearsal.invalid", "Endpoint.Port": "6379"},
    ),
    "AWS::Logs::QueryDefinition": StandIn("MiniStack's CloudFormation has no handler for it"),
    "AWS::CloudWatch::Alarm": StandIn(
        "MiniStack creates alarms on one metric but refuses metric math (Properties.Metrics)",
        when=lambda resource: "Metrics" in resource.get("Properties", {}),
    ),
    "Custom::SigningKey": StandIn(
        "MiniStack cannot run the arm64 provided.al2023 function behind it (functions/signing-key, "
        "tested on its own against moto)",
        {"PublicKeys": "rehearsal-1:" + "A" * 43, "KeyId": "rehearsal-1"},
    ),
}


# SAM properties whose transform output MiniStack cannot create, dropped from the rehearsal's copy
# (Globals and every function): property -> why. docs/first-deploy.md lists them with the types.
DROPPED_SAM_PROPERTIES: dict[str, str] = {
    "DeploymentPreference": "the transform makes CodeDeploy resources (AWS::CodeDeploy::Application, "
    "AWS::CodeDeploy::DeploymentGroup) and MiniStack has no CodeDeploy; the alias is still published",
}


def drop_sam_properties(template: dict) -> list[str]:
    """Removes every DROPPED_SAM_PROPERTIES property from Globals.Function and each function."""
    dropped = []
    holders = [("Globals.Function", template.get("Globals", {}).get("Function", {}))]
    holders += [(name, r.get("Properties", {})) for name, r in template.get("Resources", {}).items()
                if r.get("Type") == "AWS::Serverless::Function"]
    for where, props in holders:
        for prop, why in DROPPED_SAM_PROPERTIES.items():
            if props.pop(prop, None) is not None:
                dropped.append(f"{where}.{prop} dropped ({why})")
    return dropped


def swap_stand_ins(template: dict) -> list[str]:
    """Replaces every resource of a STAND_INS type in place, and drops DROPPED_SAM_PROPERTIES;
    returns what was swapped."""
    dropped = drop_sam_properties(template)
    resources = template["Resources"]
    swapped = {name: STAND_INS[r["Type"]] for name, r in resources.items()
               if r.get("Type") in STAND_INS and (STAND_INS[r["Type"]].when is None or STAND_INS[r["Type"]].when(r))}
    types = {name: resources[name]["Type"] for name in swapped}
    for name in swapped:
        old = resources[name]
        new = {"Type": "AWS::CloudFormation::WaitConditionHandle"}
        for keep in ("DependsOn", "Condition"):
            if keep in old:
                new[keep] = old[keep]
        resources[name] = new

    def literal(name: str, attr: str) -> str:
        try:
            return swapped[name].attributes[attr]
        except KeyError:
            raise SystemExit(f"rehearsal: {name}.{attr} is read but its stand-in has no literal for it (STAND_INS)")

    def walk(node):
        if isinstance(node, dict):
            if len(node) == 1 and "Fn::GetAtt" in node:
                ref = node["Fn::GetAtt"]
                name, attr = ref.split(".", 1) if isinstance(ref, str) else ref
                if name in swapped:
                    return literal(name, attr)
            if len(node) == 1 and "Fn::Sub" in node:
                sub = node["Fn::Sub"]
                text = sub if isinstance(sub, str) else sub[0]

                def fill(m):
                    name, _, attr = m.group(1).partition(".")
                    return literal(name, attr) if name in swapped and attr else m.group(0)

                text = re.sub(r"\$\{([A-Za-z0-9.]+)\}", fill, text)
                return {"Fn::Sub": text if isinstance(sub, str) else [text, walk(sub[1])]}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    for key in ("Resources", "Outputs"):
        template[key] = walk(template.get(key, {}))
    return dropped + [f"{name}: {types[name]} -> WaitConditionHandle ({s.why})" for name, s in swapped.items()]


# ------------------------------------------------------------------ expressions
class Context:
    """What `${{ ... }}` may name: vars, secrets, inputs, needs.<job>.outputs, github.sha/token."""

    def __init__(self, fixture: dict, environment: str | None, sha: str, inputs=None, needs=None, overrides=None):
        repo = fixture["repository"]
        env = fixture["environments"].get(environment, {}) if environment else {}
        self.vars = {**repo.get("vars", {}), **env.get("vars", {}), **(overrides or {})}
        self.secrets = {**repo.get("secrets", {}), **env.get("secrets", {})}
        self.inputs = inputs or {}
        self.needs = needs or {}
        self.sha = sha

    def with_inputs(self, inputs: dict) -> "Context":
        """The same context inside a composite action, whose `inputs` are its own."""
        inner = copy.copy(self)
        inner.inputs = inputs
        return inner

    def value(self, expr: str) -> str:
        m = re.fullmatch(r"(vars|secrets|inputs)\.([A-Za-z0-9_-]+)", expr)
        if m:
            # GitHub gives an unset variable or secret as the empty string.
            return str(getattr(self, m.group(1)).get(m.group(2), ""))
        m = re.fullmatch(r"needs\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", expr)
        if m:
            return self.needs.get(m.group(1), {}).get(m.group(2), "")
        if expr == "github.sha":
            return self.sha
        if expr == "github.token":
            return "rehearsal-token"
        raise SystemExit(f"rehearsal: no value for the expression `{expr}` (scripts/deploy_rehearsal.py Context)")

    def fill(self, text):
        if not isinstance(text, str):
            return text
        return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", lambda m: self.value(m.group(1)), text)


# ------------------------------------------------------------------ running steps
SAM_SHIM = """#!/usr/bin/env bash
printf '%s\\0' "$@" >>"$SAM_ARGV_LOG"; printf '\\n' >>"$SAM_ARGV_LOG"
exec {sam} "$@"
"""


def last_sam_deploy(work: Path) -> list[str] | None:
    """The arguments of the last `sam deploy` a step ran (the shim's record)."""
    log = work / "sam-argv"
    if not log.exists():
        return None
    calls = [line.split("\0") for line in log.read_text().split("\0\n") if line]
    deploys = [c for c in calls if c and c[0] == "deploy"]
    return deploys[-1] if deploys else None


def parameter_overrides(argv: list[str]) -> dict[str, str]:
    """`--parameter-overrides K=V K=V ...` as SAM CLI reads them (until the next option)."""
    out: dict[str, str] = {}
    if "--parameter-overrides" not in argv:
        return out
    for arg in argv[argv.index("--parameter-overrides") + 1:]:
        if arg.startswith("--"):
            break
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def overrides_problems(argv: list[str], template_file: Path, must_pass=()) -> list[str]:
    """What SAM CLI does not say: it drops an override the template does not declare, and on an
    update reuses the previous value of a parameter that is not passed
    (samcli.commands.deploy.deploy_context.merge_parameters). Both are errors of the deploy path."""
    from samcli.yamlhelper import yaml_parse

    declared = yaml_parse(template_file.read_text()).get("Parameters", {})
    passed = parameter_overrides(argv)
    problems = [f"passes {k}, which the template does not declare (SAM CLI drops it without a word)"
                for k in passed if k not in declared]
    problems += [f"does not pass {k}, which has no default (an update would silently keep the old value)"
                 for k, d in declared.items() if "Default" not in d and k not in passed]
    problems += [f"does not pass {k}, which a deployed feature needs (tests/deploy/workflow-inputs.json must_pass)"
                 for k in must_pass if k not in passed]
    return problems
class StepFailed(Exception):
    def __init__(self, step: str, output: str):
        super().__init__(step)
        self.step = step
        self.output = output


@dataclass
class Runner:
    work: Path  # the job's workspace (GITHUB_WORKSPACE)
    endpoint: str | None
    artifacts: Path
    env: dict = field(default_factory=dict)  # what configure-aws-credentials exported
    action_edit: object = None  # a mutation applied to the composite action's steps
    transcript: list = field(default_factory=list)

    def base_env(self, sha: str, output_file: Path) -> dict:
        env = dict(os.environ)
        # `sam` is SAM CLI behind a shim that records its arguments (what the step passed).
        shim = self.artifacts.parent / "bin"
        if not (shim / "sam").exists():
            shim.mkdir(parents=True, exist_ok=True)
            (shim / "sam").write_text(SAM_SHIM.format(sam=ROOT / ".venv/bin/sam"))
            (shim / "sam").chmod(0o755)
        env["SAM_ARGV_LOG"] = str(self.artifacts.parent / "sam-argv")
        env["PATH"] = f"{shim}:{ROOT / '.venv/bin'}:{env.get('PATH', '')}"
        env.update(CREDENTIALS)
        env.update(SAM_CLI_TELEMETRY="0", GITHUB_SHA=sha, GITHUB_OUTPUT=str(output_file), GITHUB_WORKSPACE=str(self.work))
        if self.endpoint:
            env["AWS_ENDPOINT_URL"] = self.endpoint
        env.update(self.env)
        return env

    def run_script(self, name: str, script: str, step_env: dict, sha: str) -> dict:
        # GITHUB_OUTPUT lives beside the workspaces, never in the repository (the build runs there).
        out_file = self.artifacts.parent / "github_output"
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text("")
        env = self.base_env(sha, out_file)
        env.update(step_env)
        print(f"  -- step: {name}", flush=True)
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.transcript.append((name, proc.stdout))
        tail = "\n".join(proc.stdout.strip().splitlines()[-6:])
        print("     " + tail.replace("\n", "\n     "), flush=True)
        if proc.returncode != 0:
            raise StepFailed(name, proc.stdout)
        outputs = {}
        for line in out_file.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                outputs[k] = v
        return outputs

    def run_steps(self, steps: list, ctx: Context, stop_before_credentials=False, start_after_credentials=False) -> dict:
        outputs: dict[str, dict] = {}
        started = not start_after_credentials
        for step in steps:
            uses = step.get("uses", "")
            is_credentials = uses.startswith("aws-actions/configure-aws-credentials@")
            if is_credentials and stop_before_credentials:
                return outputs
            if not started:
                started = is_credentials
                if not started:
                    continue
            name = step.get("name") or uses or step.get("run", "").splitlines()[0]
            if uses:
                self.play_action(uses, {k: ctx.fill(v) for k, v in step.get("with", {}).items()}, ctx)
                continue
            script = step["run"]
            if re.match(r"\s*(pip|rustup|cargo install|sudo apt-get)\b", script):
                print(f"  -- step: {name}: skipped (installs tools; the rehearsal uses the project's .venv)")
                continue
            env = {k: ctx.fill(v) for k, v in step.get("env", {}).items()}
            got = self.run_script(name, ctx.fill(script), env, ctx.sha)
            if "id" in step:
                outputs[step["id"]] = got
        return outputs

    def play_action(self, uses: str, inputs: dict, ctx: Context):
        action = uses.split("@", 1)[0]
        if action in ("actions/checkout", "actions/setup-python", "actions/cache"):
            return  # the workspace and the tools are already there
        if action == "aws-actions/configure-aws-credentials":
            region = inputs["aws-region"]
            if not region:
                raise StepFailed(uses, "configure-aws-credentials: no aws-region")
            self.env.update(AWS_REGION=region, AWS_DEFAULT_REGION=region)
            return
        if action == "actions/upload-artifact":
            dest = self.artifacts / inputs["name"]
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.work / inputs["path"], dest / Path(inputs["path"]).name)
            return
        if action == "actions/download-artifact":
            src = self.artifacts / inputs["name"]
            if not src.is_dir():
                raise StepFailed(uses, f"download-artifact: no artifact {inputs['name']}")
            for f in src.iterdir():
                shutil.copy(f, self.work / f.name)
            return
        if action == "./.github/actions/sam-deploy":
            spec = yaml.safe_load(DEPLOY_ACTION.read_text())
            if self.action_edit:
                spec = self.action_edit(copy.deepcopy(spec))
            values = {}
            for key, decl in spec["inputs"].items():
                if key in inputs:
                    values[key] = inputs[key]
                elif decl.get("required") and "default" not in decl:
                    raise StepFailed(uses, f"sam-deploy: required input {key} not given")
                else:
                    values[key] = str(decl.get("default", ""))
            unknown = set(inputs) - set(spec["inputs"])
            if unknown:
                raise StepFailed(uses, f"sam-deploy: unexpected inputs {sorted(unknown)}")
            self.run_steps(spec["runs"]["steps"], ctx.with_inputs(values))
            return
        raise SystemExit(f"rehearsal: no stand-in for the action {uses} (scripts/deploy_rehearsal.py play_action)")


def workflow(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------ the emulator's view
class Cloud:
    def __init__(self, endpoint: str, region: str):
        kw = dict(endpoint_url=endpoint, region_name=region,
                  aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        self.cfn = boto3.client("cloudformation", **kw)
        self.s3 = boto3.client("s3", **kw)
        self.ec2 = boto3.client("ec2", **kw)
        self.lambda_ = boto3.client("lambda", **kw)
        self.region = region

    def stack(self, name: str) -> dict | None:
        try:
            return self.cfn.describe_stacks(StackName=name)["Stacks"][0]
        except self.cfn.exceptions.ClientError:
            return None

    def resources(self, name: str) -> dict:
        res = self.cfn.describe_stack_resources(StackName=name)["StackResources"]
        return {r["LogicalResourceId"]: (r["ResourceType"], r.get("PhysicalResourceId")) for r in res}

    def function_envs(self, name: str) -> dict[str, dict[str, str]]:
        """Each function of the stack: its environment as Lambda holds it."""
        out = {}
        for logical, (rtype, physical) in self.resources(name).items():
            if rtype == "AWS::Lambda::Function" and physical:
                conf = self.lambda_.get_function_configuration(FunctionName=physical)
                out[logical] = conf.get("Environment", {}).get("Variables", {})
        return out

    def failures(self, name: str) -> str:
        """The stack's failed events, with MiniStack's reason: what a truncated deploy log hides."""
        try:
            events = self.cfn.describe_stack_events(StackName=name)["StackEvents"]
        except self.cfn.exceptions.ClientError as e:
            return f"(no events: {e})"
        return "\n".join(f"{e['LogicalResourceId']} {e['ResourceType']} {e['ResourceStatus']}: {e.get('ResourceStatusReason', '')}"
                         for e in events if "FAILED" in e["ResourceStatus"])

    def template_body(self, name: str) -> str:
        body = self.cfn.get_template(StackName=name)["TemplateBody"]
        return body if isinstance(body, str) else json.dumps(body)


def samconfig_stack(env: str) -> str:
    import tomllib

    conf = tomllib.loads((ROOT / "samconfig.toml").read_text())
    return conf[env]["deploy"]["parameters"]["stack_name"]


# ------------------------------------------------------------------ the rehearsal
class Checks:
    def __init__(self):
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, detail: str = ""):
        print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f"\n     {detail}" if detail and not ok else ""), flush=True)
        if not ok:
            self.failed.append(what)
        return ok


def build(work: Path):
    """The package job's steps before its AWS credentials (sam build), in the repository."""
    fixture = json.loads(FIXTURE.read_text())
    job = workflow(DEPLOY_WORKFLOW)["jobs"]["package"]
    runner = Runner(work=ROOT, endpoint=None, artifacts=work / "artifacts")
    runner.run_steps(job["steps"], Context(fixture, None, fixture["commits"][0]), stop_before_credentials=True)
    # The rest of the job runs in its own workspace, on the rehearsal's copy of the build.
    ws = work / "package"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / ".aws-sam").mkdir(parents=True)
    shutil.copytree(ROOT / ".aws-sam/build", ws / ".aws-sam/build")
    shutil.copy(ROOT / "samconfig.toml", ws / "samconfig.toml")
    from samcli.yamlhelper import yaml_dump, yaml_parse

    built = ws / ".aws-sam/build/template.yaml"
    template = yaml_parse(built.read_text())
    for line in swap_stand_ins(template):
        print(f"  stand-in: {line}")
    built.write_text(yaml_dump(template))


def package(runner_for, fixture: dict, sha: str) -> str:
    """The package job from its AWS credentials on: sam package, the artifact. Returns the sha256."""
    job = workflow(DEPLOY_WORKFLOW)["jobs"]["package"]
    runner = runner_for("package")
    out = runner.run_steps(job["steps"], Context(fixture, None, sha), start_after_credentials=True)
    sha256 = out["package"]["sha256"]
    # The job's declared output, as the deploy jobs read it.
    declared = job["outputs"]["template-sha256"]
    assert "steps.package.outputs.sha256" in declared, declared
    return sha256


def deploy_job(runner_for, fixture, job_name: str, sha: str, sha256: str, overrides=None, action_edit=None):
    job = workflow(DEPLOY_WORKFLOW)["jobs"][job_name]
    runner = runner_for(job_name, action_edit)
    ctx = Context(fixture, job["environment"], sha, needs={"package": {"template-sha256": sha256}}, overrides=overrides)
    (runner.artifacts.parent / "sam-argv").unlink(missing_ok=True)
    runner.run_steps(job["steps"], ctx)
    check_overrides(runner)


def check_overrides(runner: Runner):
    argv = last_sam_deploy(runner.artifacts.parent)
    if argv is None:
        raise StepFailed("sam deploy", "rehearsal: the job ran no sam deploy")
    must_pass = json.loads(FIXTURE.read_text()).get("must_pass", [])
    problems = overrides_problems(argv, runner.work / argv[argv.index("--template-file") + 1], must_pass)
    if problems:
        raise StepFailed("parameter overrides", "rehearsal: the sam deploy step " + "; ".join(problems))


def rollback_job(runner_for, fixture, environment: str, commit: str, sha256: str, tamper=None):
    spec = workflow(ROLLBACK_WORKFLOW)
    # PyYAML reads the key `on` as True (YAML 1.1).
    declared = (spec.get("on") or spec.get(True))["workflow_dispatch"]["inputs"]
    given = {"run-id": "1", "commit": commit, "environment": environment, "sha256": sha256}
    inputs = {k: v for k, v in given.items() if k in declared}
    job = spec["jobs"]["redeploy"]
    runner = runner_for(f"rollback-{environment}")
    if tamper:
        tamper(runner)
    ctx = Context(fixture, Context(fixture, None, commit, inputs=inputs).fill(job["environment"]), commit, inputs=inputs)
    (runner.artifacts.parent / "sam-argv").unlink(missing_ok=True)
    runner.run_steps(job["steps"], ctx)
    check_overrides(runner)


def edit_deploy_script(pattern: str, replacement: str):
    def edit(spec):
        for step in spec["runs"]["steps"]:
            if "sam deploy" in step.get("run", ""):
                if not re.search(pattern, step["run"]):
                    raise SystemExit(f"rehearsal: mutation target {pattern!r} not in the sam deploy step")
                step["run"] = re.sub(pattern, replacement, step["run"], count=1)
                return spec
        raise SystemExit("rehearsal: the composite action has no sam deploy step")
    return edit


def expect_failure(checks: Checks, what: str, fn, message: str | list[str]):
    """`fn` must fail, and its output must hold `message` (every part of it, if a list)."""
    parts = [message] if isinstance(message, str) else message
    try:
        fn()
    except StepFailed as e:
        found = all(p in e.output for p in parts)
        checks.check(found, what, f"failed at {e.step} without {parts!r}:\n{e.output[-1500:]}")
        return
    checks.check(False, what, "the deploy succeeded")


def run(work: Path, endpoint: str) -> int:
    fixture = json.loads(FIXTURE.read_text())
    region = fixture["repository"]["vars"]["AWS_REGION"]
    cloud = Cloud(endpoint, region)
    checks = Checks()
    artifacts = work / "artifacts"

    # The account as a first deploy finds it: the artifacts bucket and a VPC with two subnets.
    # S3 refuses a LocationConstraint of us-east-1 (its default region): the constraint only elsewhere.
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    cloud.s3.create_bucket(Bucket=fixture["repository"]["vars"]["ARTIFACTS_BUCKET"], **location)
    vpc = cloud.ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [cloud.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{region}{az}")["Subnet"]["SubnetId"]
               for i, az in ((1, "a"), (2, "b"))]
    for env in fixture["environments"].values():
        for k, v in env["vars"].items():
            env["vars"][k] = {"@vpc": vpc, "@subnets": ",".join(subnets)}.get(v, v)

    def runner_for(job: str, action_edit=None) -> Runner:
        ws = work / "package" if job == "package" else work / f"ws-{job}"
        if job != "package":
            shutil.rmtree(ws, ignore_errors=True)
            ws.mkdir(parents=True)
            shutil.copy(work / "samconfig.toml" if (work / "samconfig.toml").exists() else ROOT / "samconfig.toml",
                        ws / "samconfig.toml")
        return Runner(work=ws, endpoint=endpoint, artifacts=artifacts, action_edit=action_edit)

    print("== every third-party action is pinned to a commit")
    for path in (DEPLOY_WORKFLOW, ROLLBACK_WORKFLOW, DEPLOY_ACTION):
        for uses in re.findall(r"uses:\s*(\S+)", path.read_text()):
            if not uses.startswith("./"):
                checks.check(re.fullmatch(r"[^@]+@[0-9a-f]{40}", uses) is not None,
                             f"{path.relative_to(ROOT)}: {uses} pinned to a commit")

    print("== samconfig.toml pins no region (a pinned one wins over the region the workflow configures)")
    import tomllib

    sections = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for env in ("staging", "prod"):
        pinned = sections.get(env, {}).get("deploy", {}).get("parameters", {}).get("region")
        checks.check(pinned is None, f"samconfig.toml [{env}.deploy.parameters] sets no region", f"region = {pinned!r}")

    staging, prod = samconfig_stack("staging"), samconfig_stack("prod")
    sha_a, sha_b = fixture["commits"]
    outputs_declared = set(yaml_outputs())

    print("== package (commit A)")
    sha256_a = package(runner_for, fixture, sha_a)
    checks.check(len(sha256_a) == 64, f"package recorded the packaged template's sha256 ({sha256_a[:12]}…)")

    def stack_ok(name: str, what: str):
        s = cloud.stack(name)
        status = s and s["StackStatus"]
        checks.check(status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"), f"{what}: {name} is {status}")
        got = {o["OutputKey"] for o in (s or {}).get("Outputs", [])}
        checks.check(outputs_declared <= got, f"{what}: every output of the template ({len(outputs_declared)})",
                     f"missing {sorted(outputs_declared - got)}")
        return s

    print("== mutation check on the first deploy: a required parameter dropped (VpcId)")
    expect_failure(checks, "mutation: a required parameter dropped on a first deploy (VpcId)",
                   lambda: deploy_job(runner_for, fixture, "deploy-staging", sha_a, sha256_a,
                                      action_edit=edit_deploy_script(r'"VpcId=\$VPC_ID"\s*', "")),
                   ["ValidationError", "CreateChangeSet", "VpcId"])
    left = cloud.stack(staging)
    if left is not None:  # a create that failed leaves its stack behind (ROLLBACK_COMPLETE)
        print(f"  the failed create left {staging} in {left['StackStatus']}; deleting it")
        cloud.cfn.delete_stack(StackName=staging)

    print("== deploy-staging (the package job's artifact)")
    try:
        deploy_job(runner_for, fixture, "deploy-staging", sha_a, sha256_a)
    except StepFailed as e:
        checks.check(False, "deploy-staging", e.output[-3000:] + "\n" + cloud.failures(staging))
        return report(checks)
    stack_ok(staging, "staging deploy")
    checks.check(cloud.stack(staging) is not None, f"the stack is in the workflow's region {region}")
    before = cloud.resources(staging)

    print("== deploy-prod (the very same file)")
    try:
        deploy_job(runner_for, fixture, "deploy-prod", sha_a, sha256_a)
    except StepFailed as e:
        checks.check(False, "deploy-prod", e.output[-3000:] + "\n" + cloud.failures(prod))
        return report(checks)
    stack_ok(prod, "prod deploy")
    import tomllib

    prod_conf = tomllib.loads((ROOT / "samconfig.toml").read_text())["prod"]["deploy"]["parameters"]
    reserved = dict(o.split("=", 1) for o in prod_conf.get("parameter_overrides", []) if "Concurrency=" in o)
    got = {p["ParameterKey"]: p.get("ParameterValue") for p in cloud.stack(prod)["Parameters"]}
    checks.check(bool(reserved) and all(got.get(k) == v for k, v in reserved.items()),
                 "prod runs with samconfig's prod reserved concurrency", f"samconfig {reserved}, stack {got}")
    staging_got = {p["ParameterKey"]: p.get("ParameterValue") for p in cloud.stack(staging)["Parameters"]}
    checks.check(all(staging_got.get(k) == "-1" for k in reserved), "staging reserves no concurrency",
                 f"{ {k: staging_got.get(k) for k in reserved} }")
    checks.check(cloud.resources(staging) == before, "prod's deploy created and changed nothing in staging")
    # An HTTP API stage's physical id is its name ($default), which every API has.
    def own_ids(resources):
        return {pid for rtype, pid in resources.values() if pid and rtype != "AWS::ApiGatewayV2::Stage"}

    shared_ids = own_ids(before) & own_ids(cloud.resources(prod))
    envs = {stage: cloud.function_envs(stage) for stage in (staging, prod)}
    plain = [f"{fn}.{k}" for stage in envs.values() for fn, env in stage.items() for k in env
             if re.search(r"(SECRET|PASSWORD|PRIVATE|SIGNING_KEY$|API_KEY)", k) and not k.endswith("_SECRET_ARN")]
    checks.check(bool(envs[staging]) and not plain, "no deployed function's environment carries a secret", f"{plain}")
    names = {stage: {(env.get("JWT_ISSUER"), env.get("JWT_AUDIENCE")) for env in e.values() if "JWT_ISSUER" in env}
             for stage, e in envs.items()}
    checks.check(len(names[staging]) == 1 and len(names[prod]) == 1 and names[staging] != names[prod],
                 "each stage's functions share one issuer and audience, and the stages differ", f"{names}")
    checks.check(not shared_ids, "staging and prod share no physical resource", f"shared: {sorted(shared_ids)}")

    print("== a changed parameter updates staging")
    changed = fixture["changed"]
    try:
        deploy_job(runner_for, fixture, f"deploy-{changed['environment']}", sha_a, sha256_a, overrides=changed["vars"])
        key, want = changed["parameter"]
        got = {p["ParameterKey"]: p.get("ParameterValue") for p in cloud.stack(staging)["Parameters"]}.get(key)
        checks.check(got == want and cloud.stack(staging)["StackStatus"] == "UPDATE_COMPLETE",
                     f"{key} updated to {want}", f"got {got}")
    except StepFailed as e:
        checks.check(False, "changed parameter", e.output[-3000:])

    print("== release B, then roll staging back to A")
    sha256_b = package(runner_for, fixture, sha_b)
    deploy_job(runner_for, fixture, "deploy-staging", sha_b, sha256_b)
    checks.check(f"{sha_b}/" in cloud.template_body(staging), "staging runs release B")
    try:
        rollback_job(runner_for, fixture, "staging", sha_a, sha256_a)
        checks.check(f"{sha_a}/" in cloud.template_body(staging) and f"{sha_b}/" not in cloud.template_body(staging),
                     "rollback deployed release A's packaged template")
    except StepFailed as e:
        checks.check(False, "rollback to A", e.output[-3000:])

    print("== a tampered artifact is refused")
    artifact_a = artifacts / f"packaged-{sha_a}" / "packaged.yaml"
    original = artifact_a.read_text()
    last = cloud.stack(staging).get("LastUpdatedTime")
    artifact_a.write_text(original.replace(f"/{sha_a}/", f"/{sha_b}/", 1))
    try:
        expect_failure(checks, "rollback of a tampered artifact fails its sha256 check",
                       lambda: rollback_job(runner_for, fixture, "staging", sha_a, sha256_a),
                       "is not the packaged template")
    finally:
        artifact_a.write_text(original)
    checks.check(cloud.stack(staging).get("LastUpdatedTime") == last, "the tampered artifact deployed nothing")

    print("== mutation checks (each must fail)")
    conf = (ROOT / "samconfig.toml").read_text()
    mutated = re.sub(r"(\[staging\.deploy\.parameters\]\n)", r"\1resolve_s3 = true\n", conf, count=1)
    (work / "samconfig.toml").write_text(mutated)
    try:
        expect_failure(checks, "mutation: resolve_s3 back in samconfig with --s3-bucket",
                       lambda: deploy_job(runner_for, fixture, "deploy-staging", sha_a, sha256_a),
                       "Cannot use both --resolve-s3 and --s3-bucket")
    finally:
        (work / "samconfig.toml").unlink()

    expect_failure(checks, "mutation: a parameter the template does not declare",
                   lambda: deploy_job(runner_for, fixture, "deploy-staging", sha_a, sha256_a,
                                      action_edit=edit_deploy_script(r'"Stage=\$STAGE"', '"Stage=$STAGE" "NotInTemplate=x"')),
                   "passes NotInTemplate, which the template does not declare")
    expect_failure(checks, "mutation: a required parameter dropped on an update (VpcId)",
                   lambda: deploy_job(runner_for, fixture, "deploy-staging", sha_a, sha256_a,
                                      action_edit=edit_deploy_script(r'"VpcId=\$VPC_ID"\s*', "")),
                   "does not pass VpcId, which has no default")
    return report(checks)


def yaml_outputs() -> list[str]:
    """The template's unconditional outputs (a conditional one may rightly be absent)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from provision import load_template

    outputs = load_template(ROOT / "template.yaml").get("Outputs", {})
    return [name for name, spec in outputs.items() if "Condition" not in spec]


def report(checks: Checks) -> int:
    if checks.failed:
        print(f"deploy rehearsal: {len(checks.failed)} check(s) failed: " + "; ".join(checks.failed))
        return 1
    print("deploy rehearsal: every check passed")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "build":
        try:
            build(Path(argv[1]))
        except StepFailed as e:
            print(e.output[-3000:])
            return 1
        return 0
    if len(argv) == 3 and argv[0] == "run":
        return run(Path(argv[1]), argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
