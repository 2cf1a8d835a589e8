"""The embedded default's broker: kombu's file-system transport, made safe across processes.

kombu's own transport creates a message file and then writes it, while a consumer in another
process may already move and read it: the worker then reads an empty or partial message and
stops with a JSON error (seen when the web server and the worker's scheduler both send). Here a
message is written under a temporary name that consumers ignore and renamed into place, which
is atomic on one file system.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


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
