"""One place to add a function (issue 30): every list of functions agrees with template.yaml
(scripts/functions.py --check), and docs/adding-a-function.md stays true: this test follows its
steps with a throwaway function `hello` on a copy of the repository's relevant files, shows the
checks pass once every step is done, and that skipping any one step is caught with a message that
names the step. (It does not compile the throwaway crate: the checklist's last command does that
for a real function.)"""

import json
import pathlib
import re
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import functions  # noqa: E402

NAME, LOGICAL = "hello", "HelloFunction"
COPIED = [
    "template.yaml", "Cargo.toml", "README.md", "openapi.yaml", "events", "scripts/provision.py",
    "scripts/routes.py", "scripts/functions.py", "tests/template/test_translated_template.py",
    "tools/e2e/tests/routes.rs", "tools/e2e/Cargo.toml", "tools/bench/src/perf.rs",
    *(str(p.relative_to(ROOT)) for d in sorted((ROOT / "functions").iterdir()) for p in (d / "Cargo.toml", d / "src/main.rs")),
]


def insert_after(path, anchor, text):
    content = path.read_text()
    assert anchor in content, f"{path.name} no longer has {anchor!r}: update this test and the checklist"
    path.write_text(content.replace(anchor, anchor + text, 1))


def crate(root):
    d = root / "functions" / NAME
    (d / "src").mkdir(parents=True)
    (d / "Cargo.toml").write_text(f'[package]\nname = "{NAME}"\nversion = "0.1.0"\nedition.workspace = true\n')
    (d / "src/main.rs").write_text("fn main() {}\n")


def template(root):
    insert_after(root / "template.yaml", "\nResources:\n", f"""  {LOGICAL}:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: {NAME}
    Properties:
      Events:
        Hello:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Method: GET
            Path: /hello
""")


def permissions(root):
    test = root / "tests/template/test_translated_template.py"
    insert_after(test, "INTENDED_IAM = {\n", f'    "{LOGICAL}": ({{BASIC}}, set()),\n')
    insert_after(test, "BINARIES = {\n", f'    "{NAME}": "{LOGICAL}",\n')


def router(root):
    insert_after(root / "Cargo.toml", "[workspace.metadata.lambda.watch.router]\n",
                 f'"/hello" = [{{ method = "GET", function = "{NAME}" }}]\n')


def route_table(root):
    insert_after(root / "tools/e2e/Cargo.toml", "[dev-dependencies]\n", f'{NAME} = {{ path = "../../functions/{NAME}" }}\n')
    insert_after(root / "tools/e2e/tests/routes.rs", "BTreeMap::from([\n",
                 f'        ("{NAME}".to_owned(), owned({NAME}::handler::ROUTES.pairs())),\n')


def openapi(root):
    insert_after(root / "openapi.yaml", "\npaths:\n",
                 f'  /hello:\n    get:\n      operationId: hello\n      x-function: {NAME}\n'
                 '      responses:\n        "200": { description: hello }\n')


def events(root):
    (root / "events" / NAME).mkdir()
    (root / "events" / NAME / "get.json").write_text(json.dumps(
        {"version": "2.0", "routeKey": "GET /hello", "rawPath": "/hello", "requestContext": {"http": {"method": "GET"}}}))
    manifest = root / "events/manifest.json"
    entries = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(entries + [{"function": NAME, "event": f"{NAME}/get.json", "expectStatus": 200}]))


def bench(root):
    perf = root / "tools/bench/src/perf.rs"
    text = perf.read_text()
    text, n = re.subn(r"(pub const FUNCTIONS: \[&str; )(\d+)(\] =\s*\[)",
                      lambda m: f'{m.group(1)}{int(m.group(2)) + 1}{m.group(3)}"{NAME}", ', text)
    assert n == 1, "tools/bench/src/perf.rs no longer has FUNCTIONS: update this test and the checklist"
    perf.write_text(text)


def readme(root):
    insert_after(root / "README.md", "| function | trigger | what it does |\n| --- | --- | --- |\n",
                 f"| {NAME} | API Gateway HTTP API | says hello |\n")


STEPS = {"crate": crate, "template": template, "permissions": permissions, "router": router,
         "route-table": route_table, "openapi": openapi, "events": events, "bench": bench, "readme": readme}


def checklist_steps():
    text = (ROOT / "docs/adding-a-function.md").read_text()
    return re.findall(r"^\d+\. \*\*([a-z-]+)\*\*", text, re.M)


def repo_copy(tmp_path):
    root = tmp_path / "repo"
    for rel in COPIED:
        src, dst = ROOT / rel, root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    return root


def test_the_repository_lists_every_function_where_template_yaml_declares_it():
    assert functions.problems(ROOT) == []


def test_this_test_follows_the_checklist_step_by_step():
    assert checklist_steps() == list(STEPS), "docs/adding-a-function.md's steps and this test's differ"


def test_a_function_added_by_every_step_passes_the_checks(tmp_path):
    root = repo_copy(tmp_path)
    for step in STEPS.values():
        step(root)
    assert NAME in [f["binary"] for f in functions.functions(root)]
    assert functions.problems(root) == []


@pytest.mark.parametrize("skipped", list(STEPS))
def test_skipping_a_step_is_caught_and_named(tmp_path, skipped):
    root = repo_copy(tmp_path)
    for name, step in STEPS.items():
        if name != skipped:
            step(root)
    found = functions.problems(root)
    assert any(f"step '{skipped}'" in p for p in found), f"skipping '{skipped}' went unnoticed: {found}"
