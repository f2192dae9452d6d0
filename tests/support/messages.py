"""Reading distill's messages in a Redis queue, as a test checks what was sent."""

from __future__ import annotations

import base64
import json

import redis


def job_ids(raw: bytes) -> list[int]:
    """The job ids one queued message carries (a list, or one id in the older messages)."""
    message = json.loads(raw)
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    arg = json.loads(body)[0][0]
    return list(arg) if isinstance(arg, list) else [arg]


def queued_job_ids(client: redis.Redis, queue: str) -> list[int]:
    """Every job id in `queue`'s messages, in the order workers get them (kombu pushes on the
    left and pops on the right)."""
    return [i for raw in reversed(client.lrange(queue, 0, -1)) for i in job_ids(bytes(raw))]
