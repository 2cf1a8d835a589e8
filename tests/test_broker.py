"""The embedded broker: messages written by one side are never read half-written by the other."""

import logging
import socket
import threading

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport.redis import Transport as KombuRedisTransport

from config.broker import AtomicFilesystemTransport, ClosedSafeRedisTransport
from tests.conftest import require_service


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


def _redis_listening() -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


def _delivered_then_transport_closed(transport, queue_name: str):
    """A message received on a consumer's channel, then the state a worker is in when the broker
    goes away: its connection closed (kombu's Connection drops the transport's client), the
    consumer's channel still open with the acknowledgement pending in the event loop."""
    conn = Connection("redis://127.0.0.1:6379/13", transport=transport)
    queue = Queue(queue_name, Exchange(queue_name), queue_name)
    with conn.Producer() as producer:
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key=queue_name, declare=[queue])
    received = []
    channel = conn.channel()
    consumer = conn.Consumer(queue, channel=channel, callbacks=[lambda b, m: received.append(m)])
    consumer.consume()
    conn.drain_events(timeout=5)
    assert len(received) == 1
    channel._pool = None  # the pool is rebuilt from the transport's connection details
    channel.connection.client = None
    return conn, received[0]


def test_an_ack_after_the_broker_connection_closed_is_a_connection_error(caplog):
    """In the worker's event-loop close, a pending late ack on a closed Redis connection must be
    logged as a lost ack (a connection error Celery handles), never an AttributeError that stops
    the worker. Nothing is lost: the message stays unacknowledged in Redis for redelivery."""
    require_service(_redis_listening(), "Redis on 127.0.0.1:6379")
    redis.Redis(port=6379, db=13).flushdb()
    conn, message = _delivered_then_transport_closed(ClosedSafeRedisTransport, "acks")
    with caplog.at_level(logging.CRITICAL):
        message.ack_log_error(logging.getLogger("worker"), conn.connection_errors)
    assert "Couldn't ack" in caplog.text
    assert not message.acknowledged
    assert redis.Redis(port=6379, db=13).hlen("unacked") == 1
    redis.Redis(port=6379, db=13).flushdb()


def test_kombu_s_own_redis_channel_still_fails_so_the_mended_one_is_needed():
    """Pins the kombu behaviour config/broker.py works around: when this fails, kombu handles a
    closed connection itself and ClosedSafeRedisTransport can go."""
    require_service(_redis_listening(), "Redis on 127.0.0.1:6379")
    redis.Redis(port=6379, db=13).flushdb()
    conn, message = _delivered_then_transport_closed(KombuRedisTransport, "acks-stock")
    with pytest.raises(AttributeError):
        message.ack_log_error(logging.getLogger("worker"), conn.connection_errors)
    redis.Redis(port=6379, db=13).flushdb()
