# The two commands: `make dev` runs the whole bundle locally, `make test` runs every test.
# Both install what is missing on a fresh Debian machine (scripts/bootstrap.sh).
SHELL := /bin/bash
.PHONY: dev down test test-arm64 bench drill fuzz build fmt logs sync delete

dev:
	scripts/dev.sh

down:
	scripts/stack.sh down .dev

test:
	scripts/test.sh

# The arm64 bootstraps of `make build`, each answering its sample events under qemu-aarch64.
test-arm64:
	scripts/test-arm64.sh

bench:
	scripts/release-run.sh perf docs/performance.md

drill:
	scripts/release-run.sh drill docs/reliability.md

fuzz:
	scripts/fuzz.sh

# arm64 bootstraps for every function, through SAM's rust-cargolambda build (cargo-lambda + zig).
build:
	scripts/build.sh

fmt:
	cargo fmt --all

# ---------------------------------------------------------------- day two (issue 28)
# Against a deployed stack: STACK (default the dev stack of samconfig.toml), REGION.
STACK ?= rust-serverless-bundle-dev
REGION ?= us-east-1

# Tails one function's logs: make logs FUNCTION=PostsReadFunction (a logical id of template.yaml).
logs:
	@test -n "$(FUNCTION)" || { echo "usage: make logs FUNCTION=PostsReadFunction [STACK=...]" >&2; exit 2; }
	sam logs --stack-name "$(STACK)" --region "$(REGION)" --name "$(FUNCTION)" --tail

# A personal dev stack kept in sync with the working tree (sam sync --watch skips CodeDeploy and
# CloudFormation for code changes: never point it at staging or prod). Parameters as for sam
# deploy, from samconfig.toml's [default] section or PARAMS="Key=Value ...".
DEV_STACK ?= rust-serverless-bundle-dev-$(USER)
sync:
	@case "$(DEV_STACK)" in *-prod|*-staging) echo "make sync is for personal dev stacks" >&2; exit 2;; esac
	sam sync --watch --stack-name "$(DEV_STACK)" --region "$(REGION)" $(if $(PARAMS),--parameter-overrides $(PARAMS),)

# Deletes a stack after listing what it keeps (the tables and the uploads bucket are retained).
delete:
	scripts/stack-delete.sh "$(STACK)" "$(REGION)"

