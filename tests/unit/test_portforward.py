"""A port-forward stream whose pod dies: the connection closes, no thread prints a traceback.

The peer is a real TCP connection on loopback speaking the port-forward protocol of the Kubernetes API
(binary websocket frames: a channel byte, then data; data and error channel announce the port first);
the stream breaks as a dying pod's does, with a reset in the middle of the stream.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest
import websocket

from helm_redis.portforward import PodForwarder, _quiet_port_forward

PORT = 6379


def _frame(payload: bytes) -> bytes:
    """One unmasked binary websocket frame, as a server sends it (payloads under 126 bytes)."""
    assert len(payload) < 126
    return bytes((0x82, len(payload))) + payload


def _unmask(frame: bytes) -> bytes:
    """The payload of one short masked frame, as a client sends it."""
    assert frame[0] == 0x82 and frame[1] & 0x80 and (frame[1] & 0x7F) < 126
    length, mask = frame[1] & 0x7F, frame[2:6]
    return bytes(b ^ mask[i % 4] for i, b in enumerate(frame[6 : 6 + length]))


@pytest.fixture
def peer() -> Iterator[tuple[socket.socket, websocket.WebSocket]]:
    """(the API server's end, the client's websocket) over one loopback TCP connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    ws = websocket.WebSocket()
    ws.sock, ws.connected = client, True  # the HTTP upgrade is not what is under test
    port = struct.pack("<H", PORT)
    server.sendall(_frame(b"\x00" + port) + _frame(b"\x01" + port))  # data and error channel ready
    yield server, ws
    server.close()
    client.close()


@pytest.fixture
def thread_errors() -> Iterator[list[str]]:
    """What would have been printed as `Exception in thread ...`."""
    seen: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: seen.append(f"{args.thread.name}: {args.exc_type.__name__}")
    yield seen
    threading.excepthook = previous


def _reset(server: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a connection to a vanished pod ends."""
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()


def test_data_flows_both_ways_through_the_stream(peer, thread_errors):
    server, ws = peer
    forward = _quiet_port_forward()(ws, [PORT], lambda _error: None)
    local = forward.socket(PORT)
    local.settimeout(5)

    local.sendall(b"PING\r\n")
    received = server.recv(1024)
    server.sendall(_frame(b"\x00+PONG\r\n"))

    assert _unmask(received) == b"\x00PING\r\n"  # channel 0 (data), then the bytes
    assert local.recv(1024) == b"+PONG\r\n"
    forward.close()
    assert not thread_errors


def test_a_stream_reset_by_a_dying_pod_closes_the_connection_without_a_thread_traceback(peer, thread_errors):
    server, ws = peer
    broken: list[BaseException] = []
    forward = _quiet_port_forward()(ws, [PORT], broken.append)
    local = forward.socket(PORT)
    local.settimeout(5)

    _reset(server)

    assert local.recv(1024) == b""  # the client sees a closed connection, as with a dead node
    assert len(broken) == 1 and isinstance(broken[0], ConnectionResetError)
    assert not thread_errors


def test_the_unguarded_proxy_thread_would_print_a_traceback(peer, thread_errors):
    """The failure the quiet stream exists for (so the test above can fail)."""
    from kubernetes.stream.ws_client import PortForward

    server, ws = peer
    forward = PortForward(ws, [PORT])
    forward.socket(PORT).settimeout(5)

    _reset(server)

    for thread in threading.enumerate():
        if thread.name.startswith("Kubernetes port forward proxy"):
            thread.join(timeout=5)
    assert thread_errors == [f"Kubernetes port forward proxy: {PORT}: ConnectionResetError"]


# --- the forwarder: at most one line per pod, only with HELM_DEBUG ------------------------------------------


def _refused_api():
    """A real API client whose server address refuses connections (nothing listens on port 1)."""
    from kubernetes import client

    return client.CoreV1Api(client.ApiClient(client.Configuration(host="https://127.0.0.1:1")))


def _connect_until_closed(forwarder: PodForwarder, pod: str, times: int) -> None:
    address = forwarder.local_address(pod)
    for _ in range(times):
        with socket.create_connection((address.host, address.port), timeout=5) as connection:
            connection.settimeout(10)
            assert connection.recv(16) == b""  # closed, as a dead node's connection


def test_a_pod_that_cannot_be_reached_gets_one_diagnostic_line_however_often_it_breaks(thread_errors):
    lines: list[str] = []
    forwarder = PodForwarder(_refused_api(), "default", PORT, dict, diagnostic=lines.append)
    try:
        _connect_until_closed(forwarder, "redis-0", 3)
        _connect_until_closed(forwarder, "redis-1", 1)
    finally:
        forwarder.close()

    assert len(lines) == 2, lines
    assert "redis-0" in lines[0] and "redis-1" in lines[1]
    assert not thread_errors


def test_without_helm_debug_a_broken_stream_prints_nothing(monkeypatch, capfd):
    monkeypatch.delenv("HELM_DEBUG", raising=False)
    forwarder = PodForwarder(_refused_api(), "default", PORT, dict)
    try:
        _connect_until_closed(forwarder, "redis-0", 2)
    finally:
        forwarder.close()

    assert capfd.readouterr().err == ""


def test_with_helm_debug_a_broken_stream_prints_one_line_per_pod(monkeypatch, capfd):
    monkeypatch.setenv("HELM_DEBUG", "true")
    forwarder = PodForwarder(_refused_api(), "default", PORT, dict)
    try:
        _connect_until_closed(forwarder, "redis-0", 2)
    finally:
        forwarder.close()

    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "port-forward to pod redis-0 broke" in err, err
