"""What distill asks of the broker itself, beside Celery: whether it kept its messages.

A Redis restarted without persistence, or flushed, loses every message, and nothing in Celery
notices: the jobs stay `queued` forever. So every publish leaves a mark in Redis (a key that is
only ever set, never deleted); when the reconciler finds the mark gone, the broker has lost its
data and the queued jobs' messages are sent again. Brokers other than Redis are not checked."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import redis

EPOCH_KEY = "distill:broker-epoch"


def redis_url(broker_url: str) -> str | None:
    """The broker URL as redis-py reads it, or None when the broker is not Redis."""
    scheme = urlsplit(broker_url).scheme
    if scheme in ("redis", "rediss"):
        return broker_url
    if scheme == "redis+socket":  # kombu's spelling of a unix socket
        return "unix://" + broker_url.removeprefix("redis+socket://")
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
