"""The broker's own state in RocksDB: persistent sessions, their undelivered messages, and retained messages.

This is not the time-series store (that one knows nothing of MQTT); it is a small database of its own under the
data directory, sized to stay within a few MiB of memory. Writes are gathered into one WriteBatch that the broker
flushes once per event-loop turn: the write-ahead log reaches the operating system on every flush, so the state
survives a crash or a kill of the process; a power cut can lose the last moments (the WAL is not fsynced here,
unlike the readings' store).

Keys, all bytes:
  s<client id>                      -> session record (JSON)
  d<client id>\\x00<seq, 8 bytes BE>  -> one queued or in-flight delivery
  r<topic>                          -> retained message
  i<client id>\\x00<packet id, 2 bytes> -> a QoS 2 message received from the client, PUBREL not yet seen
  w<client id>                      -> a will waiting for its delay: due time, then the message
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from gateway.mqtt.codec import MQTT_5, MalformedPacket, Publish, Reader, encode_publish
from gateway.mqtt.session import Delivery, Message, SubOptions
from gateway.rocks import board_options

_SEQ = struct.Struct(">Q")
# qos, retain, released, packet id, number of subscription identifiers
_DELIVERY_HEAD = struct.Struct(">BBBHH")
_EXPIRY = struct.Struct(">Bd")
_DUE = struct.Struct(">d")


@dataclass(slots=True)
class SessionRecord:
    client_id: str
    expiry_interval: int
    subscriptions: dict[str, SubOptions]
    disconnected_at: float | None
    username: str | None


class StateError(Exception):
    """The broker state database cannot be opened or holds a record we cannot read."""


def _options() -> Options:
    # Small and steady beats fast here: this database holds sessions and retained messages, not readings.
    opts = board_options(write_buffer_bytes=1 << 20, max_open_files=32)
    # RocksDB's default block cache is 32 MB, and index and filter blocks live outside it unless told: both are
    # bounded here, for a board with 512 MB.
    table = BlockBasedOptions()
    table.set_block_cache(Cache(1 << 20))
    table.set_cache_index_and_filter_blocks(True)
    opts.set_block_based_table_factory(table)
    return opts


def encode_message(message: Message) -> bytes:
    """A message as an MQTT 5 PUBLISH packet, preceded by its expiry time."""
    expiry = _EXPIRY.pack(message.expires_at is not None, message.expires_at or 0.0)
    # The packet identifier slot of a QoS 1/2 PUBLISH is filled with 1: the stored copy has none of its own.
    packet_id = 1 if message.qos else None
    packet = Publish(message.topic, message.payload, message.qos, message.retain, False, packet_id, message.properties)
    return expiry + encode_publish(packet, MQTT_5)


def decode_message(data: bytes) -> Message:
    has_expiry, expires_at = _EXPIRY.unpack_from(data)
    packets = Reader(version=MQTT_5).feed(data[_EXPIRY.size :])
    if len(packets) != 1 or not isinstance(packets[0], Publish):
        raise MalformedPacket("stored message is not one PUBLISH packet")
    packet = packets[0]
    return Message(
        packet.topic, packet.payload, packet.qos, packet.retain, packet.properties, expires_at if has_expiry else None
    )


def _session_key(client_id: str) -> bytes:
    return b"s" + client_id.encode()


def _delivery_prefix(client_id: str) -> bytes:
    return b"d" + client_id.encode() + b"\x00"


def _incoming_prefix(client_id: str) -> bytes:
    return b"i" + client_id.encode() + b"\x00"


class BrokerState:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        try:
            self.db = Rdict(str(path), _options())
        except Exception as exc:
            raise StateError(
                f"cannot open the broker state database in {path}: {exc}. "
                "Is another gateway running with the same data directory?"
            ) from exc
        # Gathered writes: (key, value) puts, (key, None) deletes, (start, end) range deletes as a third form.
        # Kept as a list rather than a WriteBatch because RocksDB consumes a batch even when writing it fails,
        # and a failed flush must be retried whole.
        self._ops: list[tuple[bytes, bytes | None, bytes | None]] = []
        self._closed = False
        # Called when the first write is gathered after a flush, so that the owner schedules the next flush.
        self.on_dirty: Callable[[], None] = lambda: None

    # -- writes, gathered until flush() ----------------------------------------------------------------------

    def put_session(self, record: SessionRecord) -> None:
        subs = {
            f: [o.qos, o.no_local, o.retain_as_published, o.retain_handling, o.identifier]
            for f, o in record.subscriptions.items()
        }
        value = {
            "expiry": record.expiry_interval,
            "subs": subs,
            "disconnected_at": record.disconnected_at,
            "username": record.username,
        }
        self._put(_session_key(record.client_id), json.dumps(value).encode())

    def delete_session(self, client_id: str) -> None:
        self._delete(_session_key(client_id))
        for prefix in (_delivery_prefix(client_id), _incoming_prefix(client_id)):
            self._gather((prefix, None, prefix[:-1] + b"\x01"))

    def put_delivery(self, client_id: str, delivery: Delivery) -> None:
        head = _DELIVERY_HEAD.pack(
            delivery.qos,
            delivery.retain,
            delivery.released,
            delivery.packet_id,
            len(delivery.identifiers),
        )
        ids = b"".join(_SEQ.pack(i) for i in delivery.identifiers)
        self._put(_delivery_prefix(client_id) + _SEQ.pack(delivery.seq), head + ids + encode_message(delivery.message))

    def delete_delivery(self, client_id: str, seq: int) -> None:
        self._delete(_delivery_prefix(client_id) + _SEQ.pack(seq))

    def put_incoming_qos2(self, client_id: str, packet_id: int) -> None:
        self._put(_incoming_prefix(client_id) + packet_id.to_bytes(2, "big"), b"")

    def delete_incoming_qos2(self, client_id: str, packet_id: int) -> None:
        self._delete(_incoming_prefix(client_id) + packet_id.to_bytes(2, "big"))

    def put_will(self, client_id: str, will: Message, due: float) -> None:
        self._put(b"w" + client_id.encode(), _DUE.pack(due) + encode_message(will))

    def delete_will(self, client_id: str) -> None:
        self._delete(b"w" + client_id.encode())

    def put_retained(self, message: Message) -> None:
        self._put(b"r" + message.topic.encode(), encode_message(message))

    def delete_retained(self, topic: str) -> None:
        self._delete(b"r" + topic.encode())

    def put_record(self, kind: bytes, name: str, value: bytes) -> None:
        """A record that another part of the gateway keeps next to the sessions it belongs to (the MQTT-SN
        gateway's clients: kind b"n"), written in the same batches."""
        self._put(b"x" + kind + b"\x00" + name.encode(), value)

    def delete_record(self, kind: bytes, name: str) -> None:
        self._delete(b"x" + kind + b"\x00" + name.encode())

    def records(self, kind: bytes) -> Iterator[tuple[str, bytes]]:
        prefix = b"x" + kind + b"\x00"
        for key, value in self._scan(prefix):
            yield key[len(prefix) :].decode(), value

    def _put(self, key: bytes, value: bytes) -> None:
        self._gather((key, value, None))

    def _delete(self, key: bytes) -> None:
        self._gather((key, None, None))

    def _gather(self, op: tuple[bytes, bytes | None, bytes | None]) -> None:
        self._ops.append(op)
        if len(self._ops) == 1:
            self.on_dirty()

    def flush(self) -> None:
        """Write everything gathered in one batch; if that fails, it stays gathered for the next flush."""
        if not self._ops or self._closed:
            return
        batch = WriteBatch(raw_mode=True)
        for key, value, end in self._ops:
            if value is not None:
                batch.put(key, value)
            elif end is not None:
                batch.delete_range(key, end)
            else:
                batch.delete(key)
        self.db.write(batch)
        self._ops.clear()

    def close(self) -> None:
        self.flush()
        self.db.flush_wal(True)
        self.db.close()
        self._closed = True

    # -- reads, at start-up ------------------------------------------------------------------------------------

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.db.items(from_key=prefix):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
            if not key.startswith(prefix):
                return
            yield key, value

    def sessions(self) -> Iterator[SessionRecord]:
        for key, value in self._scan(b"s"):
            raw = json.loads(value)
            subs = {f: SubOptions(o[0], o[1], o[2], o[3], o[4]) for f, o in raw["subs"].items()}
            yield SessionRecord(key[1:].decode(), raw["expiry"], subs, raw["disconnected_at"], raw.get("username"))

    def deliveries(self, client_id: str) -> Iterator[Delivery]:
        prefix = _delivery_prefix(client_id)
        for key, value in self._scan(prefix):
            seq = _SEQ.unpack(key[len(prefix) :])[0]
            qos, retain, released, packet_id, n_ids = _DELIVERY_HEAD.unpack_from(value)
            pos = _DELIVERY_HEAD.size
            ids = [_SEQ.unpack_from(value, pos + 8 * i)[0] for i in range(n_ids)]
            message = decode_message(value[pos + 8 * n_ids :])
            yield Delivery(message, qos, bool(retain), ids, seq, packet_id, bool(released))

    def incoming_qos2(self, client_id: str) -> Iterator[int]:
        prefix = _incoming_prefix(client_id)
        for key, _value in self._scan(prefix):
            yield int.from_bytes(key[len(prefix) :], "big")

    def wills(self) -> Iterator[tuple[str, float, Message]]:
        for key, value in self._scan(b"w"):
            yield key[1:].decode(), _DUE.unpack_from(value)[0], decode_message(value[_DUE.size :])

    def retained(self) -> Iterator[Message]:
        for _key, value in self._scan(b"r"):
            yield decode_message(value)
