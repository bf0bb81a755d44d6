#!/usr/bin/env bash
# The canonical CI entry point: boot the guest in QEMU and prove the marker contract.
#
#   RUN_UNTIL_MARKER=1  stop as soon as every marker has arrived (default: wait for the guest
#                       to power itself off at the end of each boot)
#   RUN_TIMEOUT=90s     deadline for the whole run: 90, 90s, 2m, 1m30s (default: the contract's
#                       per-boot timeouts only)
#   QEMU_TIMEOUT_MULTIPLIER=2   scale the contract's timeouts (slow machines)
#   ARCH=riscv64        guest architecture: aarch64 (default) or riscv64 (images/<ARCH>.toml)
#   RUN_PROFILE=smp2    run the contract's lane of that name (default: default)
#   RUN_PHASE=store     stop once that contract phase is complete
#   JUNIT_XML=path.xml  also write a JUnit file: one <testsuite> per boot, one <testcase> per
#                       marker, for GitLab/Jenkins test reports
#
# Extra arguments go to `python -m harness run` (try --help, --timeline, --console).
# Everything - the contract, the matching, the report - lives in the harness; this script only
# maps the environment to flags. It exits 0 only on a full contract and prints where each
# boot's uart.log is. `make qemu-test` runs ./scripts/setup-host.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${VENV:-.venv}/bin/python
if [ ! -x "$PY" ]; then
  echo "qemu-test: $PY not found: run ./scripts/setup-host.sh (or: make qemu-test)" >&2
  exit 2
fi

args=(run --arch "${ARCH:-aarch64}")
case "${RUN_UNTIL_MARKER:-0}" in
  1 | yes | true) args+=(--until-marker) ;;
  0 | no | false | "") ;;
  *) echo "qemu-test: RUN_UNTIL_MARKER must be 1 or 0, got '${RUN_UNTIL_MARKER}'" >&2; exit 2 ;;
esac
if [ -n "${RUN_TIMEOUT:-}" ]; then
  args+=(--timeout "$RUN_TIMEOUT")
fi
if [ -n "${RUN_PROFILE:-}" ]; then
  args+=(--profile "$RUN_PROFILE")
fi
if [ -n "${RUN_PHASE:-}" ]; then
  args+=(--until-phase "$RUN_PHASE")
fi
if [ -n "${JUNIT_XML:-}" ]; then
  args+=(--junit "$JUNIT_XML")
fi

exec "$PY" -m harness "${args[@]}" "$@"
