"""openapi.yaml is the HTTP contract, and it cannot drift (issue 30):

- it is a valid OpenAPI 3.1 document;
- its operations are exactly the routes template.yaml gives each function (HttpApi events, and
  `POST /` for a function with a Function URL); tools/e2e/tests/routes.rs holds each function's
  own ROUTES table to the same template, so the three agree;
- its problem types are exactly the ones the Rust code can answer;
- every answer the real binaries gave to the events/ files (tools/e2e writes them when
  BUNDLE_E2E_ANSWERS names a folder; `make test` does) has a declared status, content type,
  required headers and a body valid against the operation's schema; the requests that succeeded
  are valid against the request schemas too.
"""

import base64
import json
import os
import pathlib
import re
import sys

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from provision import load_template  # noqa: E402
from routes import template_routes  # noqa: E402

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
ANSWERS_VAR = "BUNDLE_E2E_ANSWERS"


@pytest.fixture(scope="module")
def spec():
    return yaml.safe_load((ROOT / "openapi.yaml").read_text())


def operations(spec):
    """{(METHOD, path): operation}"""
    return {(m.upper(), path): op for path, item in spec["paths"].items() for m, op in item.items() if m in METHODS}


def template_operations():
    """{(METHOD, path): function binary} from template.yaml."""
    template = load_template(ROOT / "template.yaml")
    found = {(m, p): binary for binary, routes in template_routes(template).items() for m, p in routes}
    for logical, res in template["Resources"].items():
        if res.get("Type") == "AWS::Serverless::Function" and "FunctionUrlConfig" in res.get("Properties", {}):
            binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary", logical)
            found[("POST", "/")] = binary
    return found


def test_it_is_a_valid_openapi_3_1_document(spec):
    assert str(spec["openapi"]).startswith("3.1")
    validate_spec(spec)


def test_its_operations_are_the_template_routes(spec):
    documented = {key: op.get("x-function") for key, op in operations(spec).items()}
    declared = template_operations()
    missing = sorted(f"{m} {p} ({f})" for (m, p), f in declared.items() if (m, p) not in documented)
    extra = sorted(f"{m} {p}" for (m, p) in documented if (m, p) not in declared)
    wrong = sorted(f"{m} {p}: x-function {documented[(m, p)]}, template {f}"
                   for (m, p), f in declared.items() if (m, p) in documented and documented[(m, p)] != f)
    assert not missing, f"template.yaml routes missing from openapi.yaml paths: {missing}"
    assert not extra, f"openapi.yaml operations no route of template.yaml serves: {extra}"
    assert not wrong, f"openapi.yaml names another function than template.yaml: {wrong}"


# `Problem::new(StatusCode::X, "slug", "Title"`, `Problem::bad_request("slug", "Title"`, and the
# `("slug", "Title")` tables of the problem.rs files: a kebab-case literal followed by a title.
SLUG_AND_TITLE = re.compile(r'"([a-z]+(?:-[a-z]+)+|[a-z]+)",\s*"[A-Z][^"]*"')


def problem_types_in_code():
    found = {}
    for path in sorted([*ROOT.glob("shared/src/**/*.rs"), *ROOT.glob("functions/*/src/**/*.rs")]):
        text = path.read_text()
        text = text.split("#[cfg(test)]")[0]  # what tests make up is not an answer
        for slug in SLUG_AND_TITLE.findall(text):
            found.setdefault(f"/problems/{slug}", str(path.relative_to(ROOT)))
    return found


def test_its_problem_types_are_the_ones_the_code_answers(spec):
    documented = set(spec["components"]["schemas"]["ProblemType"]["enum"])
    in_code = problem_types_in_code()
    undocumented = sorted(f"{t} ({where})" for t, where in in_code.items() if t not in documented)
    stale = sorted(documented - set(in_code))
    assert not undocumented, f"problem types the code answers but openapi.yaml's ProblemType lacks: {undocumented}"
    assert not stale, f"openapi.yaml's ProblemType lists types no code answers: {stale}"


# ----------------------------------------------------------------------------- real answers
def deref(spec, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = spec
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


def schema_errors(spec, schema, instance):
    """JSON Schema errors of `instance`; the schema's #/components refs resolve in the spec."""
    root = {**schema, "components": spec["components"]}
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in OAS31Validator(root).iter_errors(instance)]


def find_operation(spec, method, raw_path):
    """The operation for a request, literal paths before templated ones, as API Gateway picks."""
    paths = sorted(spec["paths"], key=lambda p: (p.count("{"), -len(p)))
    for path in paths:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"
        if re.match(pattern, raw_path):
            return path, spec["paths"][path].get(method.lower())
    return None, None


def answer_headers(answer):
    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
    for k, values in (answer.get("multiValueHeaders") or {}).items():
        headers.setdefault(k.lower(), ", ".join(values))
    cookies = answer.get("cookies") or []
    if cookies:
        headers["set-cookie"] = cookies[0] if len(cookies) == 1 else cookies
    return headers


def body_of(message):
    raw = message.get("body") or ""
    return base64.b64decode(raw) if message.get("isBase64Encoded") else raw.encode()


def contract_problems(spec, event, answer):
    """What in a real answer (and its request, when it succeeded) the contract does not allow."""
    method, raw_path = event["requestContext"]["http"]["method"], event["rawPath"]
    path, op = find_operation(spec, method, raw_path)
    status = str(answer["statusCode"])
    headers = answer_headers(answer)
    body = body_of(answer)
    if path is None:
        return [f"{method} {raw_path}: no path of openapi.yaml matches"]
    if op is None:
        # A method the path does not serve: only a 405 problem is in the contract.
        if status != "405":
            return [f"{method} {path}: not an operation, yet the answer is {status}, not 405"]
        return schema_errors(spec, {"$ref": "#/components/schemas/Problem"}, json.loads(body))
    responses = op["responses"]
    if status not in responses:
        return [f"{method} {path}: status {status} is not declared (declared: {sorted(responses)})"]
    response = deref(spec, responses[status])
    problems = []
    for name, header in (response.get("headers") or {}).items():
        header = deref(spec, header)
        value = headers.get(name.lower())
        if value is None:
            if header.get("required"):
                problems.append(f"{method} {path} {status}: required header {name} is missing")
            continue
        problems += [f"{method} {path} {status}: header {name}: {e}"
                     for e in schema_errors(spec, header["schema"], value)]
    content = response.get("content")
    if not content:
        if body.strip():
            problems.append(f"{method} {path} {status}: a body where the contract has none")
        return problems
    media = headers.get("content-type", "").split(";")[0].strip()
    if media not in content:
        return problems + [f"{method} {path} {status}: content type {media!r}, contract: {sorted(content)}"]
    problems += [f"{method} {path} {status}: {e}" for e in schema_errors(spec, content[media]["schema"], json.loads(body))]
    if status.startswith("2") and "requestBody" in op:
        request_body = body_of(event)
        request_media = {k.lower(): v for k, v in event.get("headers", {}).items()}.get("content-type", "")
        request_content = deref(spec, op["requestBody"])["content"]
        schema = request_content.get(request_media.split(";")[0].strip(), {}).get("schema")
        if request_body.strip() and schema is not None:
            problems += [f"{method} {path} request: {e}" for e in schema_errors(spec, schema, json.loads(request_body))]
    return problems


def http_entries():
    manifest = json.loads((ROOT / "events" / "manifest.json").read_text())
    for entry in manifest:
        event = json.loads((ROOT / "events" / entry["event"]).read_text())
        if "http" in event.get("requestContext", {}):
            yield entry, event


def test_every_real_answer_of_the_sample_events_keeps_the_contract(spec):
    folder = os.environ.get(ANSWERS_VAR)
    if not folder:
        pytest.skip(f"{ANSWERS_VAR} is not set: `make test` sets it for tools/e2e and runs this after it")
    checked, problems = 0, []
    for entry, event in http_entries():
        if event["requestContext"]["http"]["method"] == "OPTIONS":
            continue  # preflights: API Gateway answers them (CorsConfiguration), not the contract's functions
        path = pathlib.Path(folder) / entry["event"]
        if not path.exists():
            problems.append(f"{entry['event']}: tools/e2e wrote no answer ({path})")
            continue
        problems += [f"{entry['event']}: {p}" for p in contract_problems(spec, event, json.loads(path.read_text()))]
        checked += 1
    assert checked > 0, f"no answers in {folder}"
    assert not problems, "answers outside openapi.yaml:\n" + "\n".join(problems)


# The checks themselves catch what they claim to.
def test_an_undeclared_status_a_missing_header_and_a_bad_body_are_caught(spec):
    event = {"rawPath": "/posts/1", "requestContext": {"http": {"method": "GET"}}}
    ok = {"statusCode": 200, "headers": {"content-type": "application/json", "x-cache": "hit"},
          "body": json.dumps({"id": "1", "title": "t", "body": "b", "authorId": "u", "published": True,
                              "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z", "version": 1})}
    assert contract_problems(spec, event, ok) == []
    teapot = {**ok, "statusCode": 418}
    assert "status 418 is not declared" in contract_problems(spec, event, teapot)[0]
    no_header = {**ok, "headers": {"content-type": "application/json"}}
    assert "required header x-cache is missing" in contract_problems(spec, event, no_header)[0]
    extra_member = {**ok, "body": json.dumps({**json.loads(ok["body"]), "secret": 1})}
    assert any("secret" in p for p in contract_problems(spec, event, extra_member))
    unknown_problem = {"statusCode": 404, "headers": {"content-type": "application/problem+json", "x-cache": "miss",
                                                      "cache-control": "no-store"},
                       "body": json.dumps({"type": "/problems/made-up", "title": "x", "status": 404, "detail": "d"})}
    assert any("made-up" in p for p in contract_problems(spec, event, unknown_problem))
