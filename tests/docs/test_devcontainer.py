"""The dev container stays the supported machine (issue 30): Debian, the Rust of Cargo.toml's
rust-version, and the same scripts/bootstrap.sh that `make dev` / `make test` run."""

import json
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEVCONTAINER = ROOT / ".devcontainer"


def config():
    # devcontainer.json is JSON with comments (line comments only here).
    text = re.sub(r"^\s*//.*$", "", (DEVCONTAINER / "devcontainer.json").read_text(), flags=re.M)
    return json.loads(text)


def test_it_builds_the_dockerfile_beside_it_and_runs_the_bootstrap():
    c = config()
    assert (DEVCONTAINER / c["build"]["dockerfile"]).is_file()
    assert c["postCreateCommand"].endswith("scripts/bootstrap.sh"), "the container ends its set-up with the bootstrap"


def test_the_image_is_debian_with_the_workspace_rust_and_the_same_bootstrap():
    dockerfile = (DEVCONTAINER / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:", dockerfile, re.M), "the supported machine is Debian"
    rust = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    assert f"--default-toolchain {rust}" in dockerfile, f"the image must install Rust {rust} (Cargo.toml rust-version)"
    assert "scripts/bootstrap.sh" in dockerfile

