"""What distill asks of the broker itself, beside Celery: whether it kept its messages.

A Redis restarted without persistence, or flushed, loses every message, and nothing in Celery
notices: the jobs stay `queued` forever. So every publish leaves a mark in Redis (a key that is
only ever set, never deleted); when the reconciler finds the mark gone, the broker has lost its
data and the queued jobs' messages are sent again. Brokers other than Redis are not checked.

A worker killed between taking messages and claiming their jobs leaves them unacknowledged,
and kombu hands them out again only after the visibility timeout (which must outlast the
longest request, so hours): `held_too_long` finds them a lease later, `give_back` returns them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu import Connection

EPOCH_KEY = "distill:broker-epoch"


def redis_url(broker_url: str) -> str | None:
    """The broker URL as redis-py reads it, or None when the broker is not Redis."""
    scheme = urlsplit(broker_url).scheme
    if scheme in ("redis", "rediss"):
        return broker_url
    if scheme == "redis+socket":  # kombu's spelling of a unix socket
        # kombu names the database `virtual_host` in a socket URL's query; redis-py, `db`.
        rest = broker_url.removeprefix("redis+socket://").replace("virtual_host=", "db=")
        return "unix://" + rest
    return None


def _client(broker_url: str) -> redis.Redis | None:
    url = redis_url(broker_url)
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10) if url else None


def mark(broker_url: str) -> None:
    """Leave the mark (if it is not there): the broker holds messages from now on."""
    client = _client(broker_url)
    if client is None:
        return
    with client:
        client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)


def waiting_messages(broker_url: str, queues: Collection[str]) -> int | None:
    """Messages waiting in `queues` (not those workers hold), or None when the broker is not
    Redis."""
    client = _client(broker_url)
    if client is None:
        return None
    with client, client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
        return sum(int(n) for n in pipe.execute())


def lost_messages(broker_url: str) -> bool:
    """True, for exactly one of several callers, when the broker lost its data since the last
    publish; the mark is set again at once, so the next call says False."""
    client = _client(broker_url)
    if client is None:
        return False
    with client:
        if client.exists(EPOCH_KEY):
            return False
        # SET NX: when reconcilers of several workers notice together, one of them re-sends.
        return bool(client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True))


def _job_ids(raw: bytes | None, task_names: Collection[str], cutoff: float) -> list[int] | None:
    """The job ids of one unacknowledged message (kombu's Redis transport stores [message,
    exchange, routing key]), or None when it is not a distill job message or its ETA (a
    requeue's countdown) is not `cutoff` behind. A message's one argument is a job id or a
    list of them."""
    if raw is None:
        return None
    try:
        message = json.loads(raw)[0]
        headers = message.get("headers") or {}
        if headers.get("task") not in task_names:
            return None
        eta = headers.get("eta")
        if eta and datetime.fromisoformat(eta).timestamp() > cutoff:
            return None  # waiting for its countdown, as it should
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        arg = json.loads(body)[0][0]  # Celery message protocol 2: [args, kwargs, embed]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    ids = arg if type(arg) is list else [arg]
    return ids if ids and all(type(i) is int for i in ids) else None


def held_too_long(
    broker_url: str, *, task_names: Collection[str], older_than: float
) -> dict[str, list[int]]:
    """Messages a worker took more than `older_than` seconds ago (and, for a countdown, that
    long past its ETA) without acknowledging them: delivery tag → job ids.

    A live worker claims what it takes within moments (or parks it, see distill.jobs.runner),
    so a message held for longer than a lease whose job is still queued was taken by a worker
    that died before its claim; kombu would give it back only after the visibility timeout."""
    url = redis_url(broker_url)
    if url is None:
        return {}
    cutoff = time.time() - older_than
    with Connection(broker_url, connect_timeout=10) as conn:
        channel: Any = conn.default_channel
        client = channel.client
        tags = client.zrangebyscore(channel.unacked_index_key, "-inf", cutoff, start=0, num=5000)
        if not tags:
            return {}
        raws = client.hmget(channel.unacked_key, tags)
    held = {}
    for tag, raw in zip(tags, raws, strict=True):
        job_ids = _job_ids(raw, task_names, cutoff)
        if job_ids is not None:
            held[tag.decode() if isinstance(tag, bytes) else str(tag)] = job_ids
    return held


def give_back(broker_url: str, tags: list[str]) -> None:
    """Put unacknowledged messages back in their queues, as kombu does when their visibility
    timeout passes (the late acknowledgement of a live holder, if any, is then a no-op)."""
    with Connection(broker_url, connect_timeout=10) as conn:
        channel: Any = conn.default_channel
        for tag in tags:
            channel.qos.restore_by_tag(tag, leftmost=True)
