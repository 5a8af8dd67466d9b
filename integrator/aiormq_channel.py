"""The one place that reaches into aiormq's channel, so that publishes can be written in batches.

aiormq's `basic_publish` writes each message on its own, behind a lock, a timeout scope and a
queue hand-off (0.13 ms of client CPU per 1.2 KB message, against 0.06 for one write per batch:
docs/benchmarks.md). To write many at once, a message is registered with the channel exactly as
`basic_publish` registers it (the next delivery tag, a confirmation future, its message id for
returns), so that aiormq still settles confirms, nacks and returns, and fails every pending
confirm when the channel closes; the frames then go straight to the connection's write queue.

Those are internals: `BatchChannel.on` checks that the channel has them, with the types this
module was written against, and refuses to start otherwise. pyproject.toml pins aiormq's minor
version; tests/test_publisher.py and the fault tests exercise every outcome. Only the publisher
publishes on its channel, so the delivery tags it takes stay in order without `channel.lock`.
"""

from __future__ import annotations

import asyncio
from functools import partial
from importlib.metadata import version

from aiormq.abc import ChannelFrame
from aiormq.channel import Channel
from aiormq.exceptions import ChannelInvalidStateError

REQUIRED = {"delivery_tag": int, "confirmations": dict, "message_id_delivery_tag": dict}


class BatchChannel:
    """An aiormq channel opened with publisher confirms, for registering and writing frames."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    @classmethod
    def on(cls, channel: object) -> BatchChannel:
        """Wrap `channel`, or raise RuntimeError if it is not the aiormq channel this expects."""
        problems = (
            [] if isinstance(channel, Channel) else [f"{type(channel).__name__} is not aiormq's Channel"]
        )
        problems += [
            f"{name} is not a {kind.__name__}"
            for name, kind in REQUIRED.items()
            if not isinstance(getattr(channel, name, None), kind)
        ]
        if not isinstance(getattr(channel, "write_queue", None), asyncio.Queue):
            problems.append("write_queue is not an asyncio.Queue")
        if problems:
            raise RuntimeError(
                f"aiormq {version('aiormq')}'s channel is not what integrator/aiormq_channel.py "
                f"expects: {'; '.join(problems)}"
            )
        assert isinstance(channel, Channel)
        return cls(channel)

    @property
    def number(self) -> int:
        return self._channel.number

    @property
    def max_content_size(self) -> int:
        return self._channel.max_content_size

    def failed(self, exc: Exception) -> asyncio.Future:
        """A confirm that has already failed with `exc`."""
        future = self._channel.create_future()
        future.set_exception(exc)
        return future

    def register(self, message_id: str) -> asyncio.Future:
        """The next delivery tag, taken for one message: the future aiormq settles with its
        confirm, nack or return."""
        channel = self._channel
        if channel.is_closed:
            raise ChannelInvalidStateError(f"{channel!r} closed")
        channel.delivery_tag += 1
        tag = channel.delivery_tag
        confirm = channel.create_future()
        channel.confirmations[tag] = confirm
        channel.message_id_delivery_tag[message_id] = tag
        confirm.add_done_callback(partial(self._forget, message_id, tag))
        return confirm

    async def write(self, frames: bytes) -> None:
        """Hand encoded frames to the connection's writer, waiting while it has no room."""
        await self._channel.write_queue.put(ChannelFrame(payload=frames, should_close=False))

    def _forget(self, message_id: str, tag: int, _: asyncio.Future) -> None:
        by_id = self._channel.message_id_delivery_tag
        if by_id.get(message_id) == tag:
            del by_id[message_id]
