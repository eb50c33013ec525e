"""A TCP proxy in front of the Kafka broker that can cut one client's connections.

The broker advertises the proxy's address, so every client's every connection (bootstrap,
coordinator, partition leaders) goes through it. Each connection is named by the
``client_id`` of its first request (every Kafka request header carries it: int32 size,
int16 api key, int16 version, int32 correlation id, int16-length client id), so
:meth:`KafkaClientProxy.sever` can close, say, only the gateway's connections and refuse
its new ones until :meth:`KafkaClientProxy.restore`, while the workers carry on: a
gateway's network link going down, not the broker's.

Runs its own event loop in a daemon thread; the methods are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">ihhih")  # size, api key, api version, correlation id, client id length


def client_id_of(first_request: bytes) -> str | None:
    """The client id in the header of a Kafka request (size prefix included); None when
    the bytes are too short or the id is null."""
    if len(first_request) < _HEADER.size:
        return None
    _, _, _, _, length = _HEADER.unpack_from(first_request)
    if length < 0 or len(first_request) < _HEADER.size + length:
        return None
    return first_request[_HEADER.size : _HEADER.size + length].decode(errors="replace")


@dataclass(eq=False)  # one per connection, kept in a set by identity
class _Conn:
    client_id: str
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0  # new connections of a severed client, closed at once
    severed: int = 0  # live connections closed by sever()
    by_client: dict[str, int] = field(default_factory=dict)


class KafkaClientProxy:
    def __init__(self, listen_port: int, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.stats = ProxyStats()
        self._blocked: set[str] = set()
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.listen_port}"

    def start(self) -> KafkaClientProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.listen_port)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._conns):
                _abort(conn)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def sever(self, client_prefix: str) -> int:
        """Close every connection whose client id starts with ``client_prefix`` and refuse
        its new ones until :meth:`restore`. Returns how many were closed."""

        async def run() -> int:
            self._blocked.add(client_prefix)
            doomed = [c for c in self._conns if c.client_id.startswith(client_prefix)]
            for conn in doomed:
                _abort(conn)
                self._conns.discard(conn)
            self.stats.severed += len(doomed)
            return len(doomed)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def restore(self, client_prefix: str) -> None:
        self._loop.call_soon_threadsafe(self._blocked.discard, client_prefix)

    def connections(self, client_prefix: str = "") -> int:
        return sum(1 for c in list(self._conns) if c.client_id.startswith(client_prefix))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            size_bytes = await reader.readexactly(4)
            (size,) = struct.unpack(">i", size_bytes)
            if not 0 < size < 100 << 20:
                raise ConnectionError(f"not a Kafka request (size {size})")
            first = size_bytes + await reader.readexactly(size)
            client_id = client_id_of(first) or ""
            if any(client_id.startswith(p) for p in self._blocked):
                self.stats.refused += 1
                writer.transport.abort()
                return
            up_reader, upstream_writer = await asyncio.open_connection(self.host, self.upstream_port)
            upstream_writer.write(first)
            conn = _Conn(client_id, (writer, upstream_writer))
            self._conns.add(conn)
            self.stats.accepted += 1
            self.stats.by_client[client_id] = self.stats.by_client.get(client_id, 0) + 1
            try:
                await asyncio.gather(_pipe(reader, upstream_writer), _pipe(up_reader, writer))
            finally:
                self._conns.discard(conn)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.transport.abort()


def _abort(conn: _Conn) -> None:
    for w in conn.writers:
        with contextlib.suppress(Exception):
            w.transport.abort()


def wait_until(predicate, timeout_s: float, interval_s: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
