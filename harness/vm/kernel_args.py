"""The guest's ``sq.*`` kernel parameters: modes, nonces, scripts.

The guest's PID 1 (``guest/init/pid1.py``) reads ``sq.mode``, ``sq.script``, ``sq.boot`` and
``sq.nonce`` from ``/proc/cmdline``. Everything the harness tells the guest goes through here,
so the kernel's command line limit is checked once, with a message that says what to shorten.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable, Mapping

from harness.errors import ConfigError
from harness.vm.arch import profile

#: Bytes of the kernel command line left for the other arguments (console=, quiet, sq.mode...)
#: when a script is passed; the base64 of ``sq.script`` may use the rest.
RESERVED_FOR_OTHER_ARGS = 448

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def new_nonce() -> str:
    """16 random hex digits: ties the boots of one run together (``sq.nonce``)."""
    return secrets.token_hex(8)


def render(templates: Iterable[str], values: Mapping[str, object]) -> tuple[str, ...]:
    """Fill ``{name}`` placeholders (``{nonce}``, ``{boot}``) in kernel argument templates.

    An unknown placeholder is an error rather than a literal ``{x}`` on the kernel command line.
    """
    rendered = []
    for template in templates:

        def substitute(match: re.Match[str], template: str = template) -> str:
            key = match[1]
            if key not in values:
                raise ConfigError(
                    f"kernel argument template {template!r} uses {{{key}}}; "
                    f"known: {', '.join(sorted(values))}"
                )
            return str(values[key])

        rendered.append(_PLACEHOLDER.sub(substitute, template))
    return tuple(rendered)


def script_args(source: str, *, arch: str = "aarch64") -> tuple[str, str]:
    """``sq.mode=script sq.script=<base64>``: run ``source`` as the guest's payload.

    The kernel keeps at most COMMAND_LINE_SIZE - 1 bytes of command line (2047 on arm64, 1023
    on riscv64), and silently truncates the rest, which would turn into a confusing base64
    error in the guest.
    """
    encoded = base64.b64encode(source.encode("utf-8")).decode("ascii")
    budget = profile(arch).command_line_size - 1 - RESERVED_FOR_OTHER_ARGS
    if len(encoded) > budget:
        raise ConfigError(
            f"sq.script is {len(encoded)} bytes of base64 ({len(source)} bytes of source); "
            f"the {arch} kernel command line leaves {budget} for it: shorten the script"
        )
    return ("sq.mode=script", f"sq.script={encoded}")


def shell_args() -> tuple[str, ...]:
    """``sq.mode=shell``: PID 1 starts a busybox shell on the console (marker debugging)."""
    return ("sq.mode=shell",)
