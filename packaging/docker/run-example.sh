#!/usr/bin/env bash
# Builds the wasm-exec-server image and runs it the way it is meant to run,
# then runs one command line through it with the binary's `exec` client.
#
#   packaging/docker/run-example.sh [--prebuilt] [--keep] [-- 'command line']
#
#   --prebuilt   build packaging/docker/Dockerfile.prebuilt from a server and
#                toolset already built on this machine (no Rust in the image
#                build): the binary is $WES_BINARY, or target/release/ or
#                $WES_CACHE/target/release/wasm-exec-server; the toolset is
#                $WES_TOOLS_DIR or $WES_CACHE/tools (WES_CACHE defaults to
#                ~/.cache/wasm-exec-server). Without it: packaging/docker/Dockerfile,
#                the full multi-stage build, with the repository as context.
#   --keep       leave the container running (and print how to stop it).
#
# Environment:
#   ENGINE      docker (default when present) or podman
#   IMAGE       image tag (default wasm-exec-server:example)
#   NAME        container name (default wes-example)
#   PUBLISH     -p value (default 127.0.0.1:8765:8765; empty: publish nothing)
#   BUILD_ARGS  extra arguments for `build` (e.g. --build-arg RUNTIME_IMAGE=…)
#   RUN_ARGS    extra arguments for `run`
#
# The container runs with a read-only root filesystem, every capability
# dropped and no new privileges, under the engine's default seccomp profile;
# it writes only to its volumes (the workspace, the module cache) and to a
# tmpfs on /tmp (the commands' private /tmp, counted in the disk quota).
# The bearer token is generated into a private directory on the host and
# mounted read-only at /run/secrets/wes-token; clients send it as
# `Authorization: Bearer <token>` (Codex: `auth_bearer_token` in
# environments.toml, see README; `wasm-exec-server exec`: WES_TOKEN).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${WES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasm-exec-server}

prebuilt=0 keep=0
# shellcheck disable=SC2016 # expanded by the sandbox's shell, not here
line='echo "hello from $(uname -n)"; echo hi > hello.txt; ls -l; cat hello.txt; python3 -c "print(6 * 7)"'
while [ $# -gt 0 ]; do
  case $1 in
    --prebuilt) prebuilt=1 ;;
    --keep) keep=1 ;;
    --) shift; [ $# -gt 0 ] && line="$*"; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-example: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null; then ENGINE=podman
  else echo "run-example: neither a running docker nor podman was found" >&2; exit 1
  fi
fi
IMAGE=${IMAGE:-wasm-exec-server:example}
NAME=${NAME:-wes-example}
PUBLISH=${PUBLISH-127.0.0.1:8765:8765}
read -r -a build_args <<<"${BUILD_ARGS:-}"
read -r -a run_args <<<"${RUN_ARGS:-}"
# podman writes OCI images by default, which drop HEALTHCHECK.
[ "$ENGINE" != podman ] || build_args+=(--format docker)

work=$(mktemp -d)
chmod 700 "$work"
# shellcheck disable=SC2329 # run by the trap
cleanup() {
  if [ "$keep" = 0 ]; then
    "$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true
    "$ENGINE" volume rm -f "$NAME-workspace" "$NAME-cache" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# --- build -------------------------------------------------------------------
if [ "$prebuilt" = 1 ]; then
  bin=${WES_BINARY:-}
  if [ -z "$bin" ]; then
    for c in "$REPO/target/release/wasm-exec-server" "$CACHE/target/release/wasm-exec-server"; do
      if [ -x "$c" ]; then bin=$c; break; fi
    done
  fi
  tools=${WES_TOOLS_DIR:-$CACHE/tools}
  [ -x "${bin:-}" ] || { echo "run-example: no release binary (cargo build --release, or set WES_BINARY)" >&2; exit 1; }
  [ -d "$tools" ] || { echo "run-example: no toolset at $tools (run tools/build.sh)" >&2; exit 1; }
  mkdir -p "$work/ctx"
  cp "$bin" "$work/ctx/wasm-exec-server"
  cp -r "$tools" "$work/ctx/tools"
  echo "run-example: building $IMAGE from $bin and $tools" >&2
  "$ENGINE" build "${build_args[@]}" -f "$HERE/Dockerfile.prebuilt" -t "$IMAGE" "$work/ctx"
else
  echo "run-example: building $IMAGE (multi-stage; the first build compiles the toolset: long)" >&2
  "$ENGINE" build "${build_args[@]}" -f "$HERE/Dockerfile" -t "$IMAGE" "$REPO"
fi

# --- run ---------------------------------------------------------------------
# The token: readable by the container's user (uid 10001) through the bind
# mount, by nobody else on the host (the directory is 0700).
head -c 32 /dev/urandom | base64 >"$work/token"
chmod 644 "$work/token"

"$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true
publish=()
[ -z "$PUBLISH" ] || publish=(-p "$PUBLISH")
"$ENGINE" run -d --name "$NAME" \
  --read-only \
  --cap-drop=ALL \
  --security-opt no-new-privileges \
  --tmpfs /tmp:rw,nosuid,nodev,size=1g,mode=1777 \
  -v "$NAME-workspace:/workspace" \
  -v "$NAME-cache:/var/cache/wasm-exec-server" \
  -v "$work/token:/run/secrets/wes-token:ro" \
  --stop-timeout 30 \
  "${publish[@]}" "${run_args[@]}" \
  "$IMAGE" >/dev/null

# Ready when /readyz answers 200 (the image's health check, run here so that
# it works with or without a published port and with podman).
ready='exec 3<>/dev/tcp/127.0.0.1/8765 && printf "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3 && head -n1 <&3 | grep -q " 200 "'
for _ in $(seq 1 120); do
  if "$ENGINE" exec "$NAME" bash -c "$ready" 2>/dev/null; then break; fi
  if [ "$("$ENGINE" inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]; then
    echo "run-example: the server exited; its log:" >&2
    "$ENGINE" logs "$NAME" >&2 || true
    exit 1
  fi
  sleep 1
done
"$ENGINE" exec "$NAME" bash -c "$ready" || { echo "run-example: not ready after 120 s" >&2; "$ENGINE" logs "$NAME" >&2; exit 1; }
echo "run-example: ready; the server's log so far:" >&2
"$ENGINE" logs "$NAME" 2>&1 | sed 's/^/  | /' >&2

# --- one command -------------------------------------------------------------
# The `exec` client inside the container, reading the token from the mounted
# file (so it is on no command line). From the host, with a published port:
#   WES_TOKEN=… wasm-exec-server exec --url ws://127.0.0.1:8765 -- 'ls -la'
echo "run-example: \$ $line" >&2
status=0
# shellcheck disable=SC2016 # expanded inside the container
"$ENGINE" exec "$NAME" bash -c \
  'WES_TOKEN=$(cat /run/secrets/wes-token) exec wasm-exec-server exec --url ws://127.0.0.1:8765 -- "$1"' \
  _ "$line" || status=$?
echo "run-example: exit status $status" >&2

if [ "$keep" = 1 ]; then
  echo "run-example: left running as $NAME; token in $work/token" >&2
  echo "  stop: $ENGINE stop -t 30 $NAME && $ENGINE rm $NAME && $ENGINE volume rm $NAME-workspace $NAME-cache && rm -r $work" >&2
else
  "$ENGINE" stop -t 30 "$NAME" >/dev/null
  echo "run-example: stopped; the server's last log lines:" >&2
  "$ENGINE" logs "$NAME" 2>&1 | tail -n 4 | sed 's/^/  | /' >&2
fi
exit "$status"
