"""L5: ``pylium-cni``, the plugin a container runtime executes (CNI wire protocol).

Reads the request from the environment and stdin with :mod:`pylium.core.cni`, answers
VERSION itself, and hands ADD/DEL/CHECK/STATUS/GC to the node's agent. The agent's endpoint
API arrives with the datapath issue; until then those commands answer the spec's
"try again later" error (code 11) rather than pretending to succeed.
"""

from __future__ import annotations

import json
import os
import sys

from pylium.core.cni import (
    SUPPORTED_VERSIONS,
    CniError,
    Command,
    ErrorCode,
    parse_request,
    render_version,
)


def run(env: dict[str, str], stdin: bytes) -> tuple[int, dict[str, object]]:
    """(exit code, JSON object to print) for one invocation."""
    version = SUPPORTED_VERSIONS[-1]
    try:
        request = parse_request(env, stdin)
        version = request.cni_version
        if request.command is Command.VERSION:
            return 0, render_version(version)
        raise CniError(
            ErrorCode.TRY_AGAIN_LATER,
            "pylium-agent endpoint API unavailable",
            f"{request.command.value} needs the agent's endpoint API, not implemented yet",
        )
    except CniError as err:
        return 1, err.to_json(version)


def main() -> None:
    code, out = run(dict(os.environ), sys.stdin.buffer.read() if not sys.stdin.isatty() else b"")
    print(json.dumps(out))
    sys.exit(code)
