"""The embedded broker: messages written by one side are never read half-written by the other."""

import threading

from kombu import Connection

from config.broker import AtomicFilesystemTransport


def test_concurrent_send_and_receive_deliver_every_message_whole(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    payload = "x" * 200_000  # large messages widen the window a partial write would leave
    count = 200

    def send() -> None:
        with Connection(transport=AtomicFilesystemTransport, transport_options=options) as conn:
            queue = conn.SimpleQueue("q")
            for i in range(count):
                queue.put({"i": i, "body": payload})

    sender = threading.Thread(target=send)
    received = []
    with Connection(transport=AtomicFilesystemTransport, transport_options=options) as conn:
        queue = conn.SimpleQueue("q")
        sender.start()
        while len(received) < count:
            message = queue.get(timeout=30)
            received.append(message.payload)
            message.ack()
    sender.join()
    assert sorted(m["i"] for m in received) == list(range(count))
    assert all(m["body"] == payload for m in received)
    assert not list(folder.iterdir())
