"""The campaign's Kafka proxy cuts one client's connections and leaves the others."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from stream.faults.proxy import KafkaClientProxy, client_id_of, wait_until
from stream.services import free_port


def request(client_id: str, body: bytes = b"") -> bytes:
    """A Kafka request: size, api key, version, correlation id, client id, body."""
    raw = client_id.encode()
    payload = struct.pack(">hhih", 3, 12, 7, len(raw)) + raw + body
    return struct.pack(">i", len(payload)) + payload


def test_client_id_is_read_from_the_request_header() -> None:
    assert client_id_of(request("vitalstream-gateway", b"\x00" * 10)) == "vitalstream-gateway"
    assert client_id_of(struct.pack(">ihhih", 10, 3, 12, 7, -1)) is None  # null client id
    assert client_id_of(b"\x00\x00") is None


@pytest.fixture
def echo_port() -> int:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _connect(port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    first = request(client_id)
    sock.sendall(first)
    assert _recv(sock, len(first)) == first  # the echo: the proxy passed it on
    return sock


def _recv(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _closed(sock: socket.socket) -> bool:
    try:
        sock.sendall(b"ping")
        return sock.recv(4) == b""
    except OSError:
        return True


def test_sever_cuts_only_the_named_client_until_restored(echo_port: int) -> None:
    proxy = KafkaClientProxy(free_port(), echo_port).start()
    try:
        gateway, worker = _connect(proxy.listen_port, "vitalstream-gateway"), _connect(proxy.listen_port, "faust-1")
        assert wait_until(lambda: proxy.connections() == 2, 5)
        assert proxy.sever("vitalstream-gateway") == 1
        assert _closed(gateway)
        worker.sendall(b"still here")
        assert _recv(worker, 10) == b"still here"
        # New connections of the severed client are refused meanwhile.
        again = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=5)
        again.sendall(request("vitalstream-gateway"))
        assert _recv(again, 4) == b""
        assert proxy.stats.refused == 1
        proxy.restore("vitalstream-gateway")
        assert wait_until(lambda: not proxy._blocked, 5)
        _connect(proxy.listen_port, "vitalstream-gateway").close()
    finally:
        proxy.stop()
