# Sourced by the scripts that run release bootstraps (release-run.sh, profile.sh):
# a fresh local stack in $STACK, its env exported, the seed data loaded and the sample events'
# access-token placeholders rendered into $STACK/events; stopped and removed on exit.
# Needs $TARGET/release/ops. Usage: . scripts/seeded-stack.sh NAME
STACK=$(mktemp -d "/tmp/bundle-$1-stack.XXXXXX")
cleanup() { scripts/stack.sh down "$STACK"; rm -rf "$STACK"; }
trap cleanup EXIT
scripts/stack.sh up "$STACK"
set -a; . "$STACK/env"; set +a
"$TARGET/release/ops" seed >/dev/null
"$TARGET/release/ops" render-events --from events --to "$STACK/events" >/dev/null
