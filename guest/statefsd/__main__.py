"""``python -m guest.statefsd --device PATH --socket PATH``: run statefsd in the foreground.

In the VM, init forks statefsd instead (no second interpreter start); this entry point is for
host use: tests, benchmarks and debugging against a file-backed device.
"""

import argparse
import sys

from guest.statefsd.policy import POLICY_PATH
from guest.statefsd.server import run_daemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="statefsd", description=__doc__.splitlines()[0])
    parser.add_argument("--device", required=True, help="block device or image file")
    parser.add_argument("--socket", required=True, help="Unix socket path to serve on")
    parser.add_argument(
        "--policy", default=POLICY_PATH, help="access policy file (default: the guest's own)"
    )
    args = parser.parse_args(argv)
    return run_daemon(args.device, args.socket, policy_path=args.policy)


if __name__ == "__main__":
    sys.exit(main())
