"""Casebook's broker transports, file system (embedded) and Redis, mended where kombu fails.

The file-system transport (the embedded default):

kombu's own transport creates a message file and then writes it, while a consumer in another
process may already move and read it: the worker then reads an empty or partial message and
stops with a JSON error (seen when the web server and the worker's scheduler both send). Here a
message is written under a temporary name that consumers ignore and renamed into place, which
is atomic on one file system.

The Redis transport (production): when the broker goes away, a worker's consumer closes its
connection and then, in the event loop's close, runs the acknowledgements still pending (acks
are late here). Such a channel's transport has already lost its connection, and kombu's Redis
channel then fails with `AttributeError` instead of a connection error; Celery handles only
connection errors there ("Couldn't ack"), so the AttributeError stopped the worker (seen once in
eight runs of tests/test_faults.py). Here the closed channel raises the broker's connection
error, so the worker logs the lost ack and reconnects. The message stays unacknowledged in
Redis, and a redelivered task is harmless because every task is idempotent.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps
from redis.exceptions import ConnectionError as RedisConnectionError


class AtomicFilesystemChannel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # Consumers take only names ending in ".<queue>.msg"; this one does not, until renamed.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
        except OSError as error:
            raise ChannelError(f"Cannot add file {final!r} to directory") from error


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicFilesystemChannel


class ClosedSafeRedisChannel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        transport = self.connection
        if transport is None or transport.client is None:
            raise RedisConnectionError("the connection to the broker was closed")
        return super()._connparams(asynchronous=asynchronous)


class ClosedSafeRedisTransport(kombu_redis.Transport):
    Channel = ClosedSafeRedisChannel
