"""A tiny handler for the adapter tests: answers with the event and context it received, or misbehaves on cue."""

from __future__ import annotations

import base64
import json
import os
from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    path = event["rawPath"]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/inferred":
        return {"hello": "world"}
    if path == "/malformed":
        return {"statusCode": "200", "body": "not a valid status"}
    if path == "/binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(b"\x00\x01\xfe\xff").decode(),
            "isBase64Encoded": True,
        }
    body = {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "aws_request_id": context.aws_request_id,
        },
        "greeting": os.environ.get("GREETING"),
    }
    return {
        "statusCode": 201 if event["requestContext"]["http"]["method"] == "POST" else 200,
        "headers": {"content-type": "application/json", "x-single": "one"},
        "multiValueHeaders": {"x-multi": ["a", "b"]},
        "cookies": ["session=abc; Path=/; HttpOnly", "theme=dark"],
        "body": json.dumps(body),
    }
