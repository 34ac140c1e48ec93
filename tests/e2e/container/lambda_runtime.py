"""Invoke one handler as a ``python3.13`` Lambda container would, in this fresh process (no Docker here).

Usage: python lambda_runtime.py CODE_DIR LAYER_DIR EVENT_FILE  (prints the handler's result as JSON)

Like the runtime: the function's code (``/var/task``) comes first on ``sys.path``, then the layer (``/opt/python``);
``app.lambda_handler`` gets the event and a context; the environment is whatever the caller gives this process
(in tests/e2e/test_sam_local.py: the one SAM CLI computes for the container). The third-party packages come from
the interpreter's site-packages, where the layer's built copy would put them.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Context:
    """The Lambda context attributes Powertools reads."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    aws_request_id: str = "c0ffee00-0000-4000-8000-000000000000"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """What is left of the function's Timeout (the token refresher budgets its run with it)."""
        return max(0, int((self.started + self.timeout_seconds - time.monotonic()) * 1000))


def main() -> int:
    code_dir, layer_dir, event_file = sys.argv[1:4]
    sys.path[:0] = [code_dir, layer_dir]
    handler = importlib.import_module("app").lambda_handler
    event = json.loads(Path(event_file).read_text(encoding="utf-8"))
    name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    context = Context(
        function_name=name,
        memory_limit_in_mb=int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]),
        invoked_function_arn=f"arn:aws:lambda:{os.environ['AWS_REGION']}:123456789012:function:{name}",
        timeout_seconds=int(os.environ["AWS_LAMBDA_FUNCTION_TIMEOUT"]),
    )
    result = handler(event, context)
    sys.stdout.write("lambda-result " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
