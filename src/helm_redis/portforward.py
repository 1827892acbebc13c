"""Reaching pods from outside the cluster: one local listener per pod, tunnelled through the Kubernetes API.

Each accepted connection opens its own port-forward stream to the pod *by name*, so a pod that is
deleted and recreated (new IP, same name) is reached again by the next connection. `address_map`
turns the addresses Redis announces (pod IPs) into these local listeners, as redis-py's
`address_remap` does for cluster clients.

A pod that dies (the drill's whole point) breaks its streams: the Kubernetes client's proxy thread
then raises (ssl.SSLEOFError, a reset, an unexpected frame) and Python would print a traceback per
stream. Here a broken stream just closes the client's connection, as a dead node's socket would; with
HELM_DEBUG set, one line per pod says why.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import select
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlparse

from .nodes import NodeAddress

Diagnostic = Callable[[str], None]


def _debug_enabled() -> bool:
    return os.environ.get("HELM_DEBUG", "").lower() in ("1", "true", "yes", "on")


def _stderr_line(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@functools.cache
def _quiet_port_forward() -> type:
    """kubernetes' PortForward whose proxy thread ends quietly when its websocket breaks."""
    from kubernetes.stream.ws_client import PortForward

    class QuietPortForward(PortForward):
        def __init__(self, websocket: Any, ports: list[int], broken: Callable[[BaseException], None]) -> None:
            self._broken = broken  # set before the base class starts the proxy thread
            super().__init__(websocket, ports)

        def _proxy(self) -> None:
            try:
                super()._proxy()
            except Exception as error:  # the pod or the API server went away mid-stream
                with contextlib.suppress(Exception):
                    self._broken(error)
                for port in self.local_ports.values():
                    with contextlib.suppress(OSError):
                        port.python.close()  # the other end (our tunnel) reads EOF and closes
                with contextlib.suppress(Exception):
                    self.websocket.close()

    return QuietPortForward


def open_port_forward(
    api_method: Any, pod: str, namespace: str, port: int, broken: Callable[[BaseException], None]
):
    """`kubernetes.stream.portforward(api_method, pod, namespace, ports=port)`, with a proxy thread that
    reports a broken stream to `broken` instead of raising in its thread."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream import ws_client

    # kubernetes.stream.portforward is _websocket_request bound to ws_client.portforward_call: the same
    # request, with a call that builds the quiet PortForward.
    requests = importlib.import_module("kubernetes.stream.stream")

    def call(configuration: Any, _method: str, url: str, **kwargs: Any):
        query = kwargs.get("query_params") or parse_qsl(urlparse(url).query, keep_blank_values=True)
        try:
            websocket = ws_client.create_websocket(
                configuration, ws_client.get_websocket_url(url, query), kwargs.get("headers")
            )
            return _quiet_port_forward()(websocket, [port], broken)
        except Exception as error:
            raise ApiException(status=0, reason=str(error)) from None

    return requests._websocket_request(
        call, {"_preload_content": False}, api_method, pod, namespace, ports=str(port)
    )


class PodForwarder:
    def __init__(
        self,
        api,
        namespace: str,
        port: int,
        pod_ips: Callable[[], dict[str, str]],
        diagnostic: Diagnostic | None = None,
    ) -> None:
        from kubernetes import client

        # kubernetes.stream swaps the request method of the ApiClient it is given while it opens a
        # stream: a client of its own (and one opening at a time) keeps the other API calls intact.
        self.api = client.CoreV1Api(client.ApiClient(api.api_client.configuration))
        self._opening = threading.Lock()
        self.namespace = namespace
        self.port = port
        self.pod_ips = pod_ips  # refreshes ip -> pod name from the API
        self._listeners: dict[str, socket.socket] = {}
        self._ip_to_pod: dict[str, str] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # At most one line per pod about broken streams, and only when asked for (HELM_DEBUG).
        self._diagnostic = diagnostic or (_stderr_line if _debug_enabled() else None)
        self._diagnosed: set[str] = set()

    def local_address(self, pod: str) -> NodeAddress:
        with self._lock:
            if pod not in self._listeners:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", 0))
                listener.listen(64)
                self._listeners[pod] = listener
                threading.Thread(target=self._accept, args=(pod, listener), daemon=True).start()
            return NodeAddress("127.0.0.1", self._listeners[pod].getsockname()[1])

    def address_map(self, address: NodeAddress) -> NodeAddress:
        """pod name or pod IP (as announced by Redis) -> the local listener for that pod."""
        pod = address.host
        if _is_ip(pod):
            if pod not in self._ip_to_pod:
                self._ip_to_pod = self.pod_ips()
            pod = self._ip_to_pod.get(pod, "")
            if not pod:
                return address  # not one of the release's pods: left as is (and will not connect)
        return self.local_address(pod)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for listener in self._listeners.values():
                with contextlib.suppress(OSError):
                    listener.close()
            self._listeners.clear()

    def _accept(self, pod: str, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(pod, client), daemon=True).start()

    def _tunnel(self, pod: str, client: socket.socket) -> None:
        forward = None
        try:
            with self._opening:
                forward = open_port_forward(
                    self.api.connect_get_namespaced_pod_portforward,
                    pod,
                    self.namespace,
                    self.port,
                    lambda error: self._broken(pod, error),
                )
            remote = forward.socket(self.port)
            remote.setblocking(True)
            _pump(client, remote, self._closed)
        except Exception as error:  # the pod is gone or not ready: the client sees a closed connection
            self._broken(pod, error)
        finally:
            with contextlib.suppress(OSError):
                client.close()
            if forward is not None:
                with contextlib.suppress(Exception):
                    forward.close()

    def _broken(self, pod: str, error: BaseException) -> None:
        """A stream to `pod` broke (in our thread or in the client's proxy thread): one line per pod."""
        if self._diagnostic is None or self._closed.is_set():
            return
        with self._lock:
            if pod in self._diagnosed:
                return
            self._diagnosed.add(pod)
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        self._diagnostic(
            f"helm redis: port-forward to pod {pod} broke ({type(error).__name__}: {reason}); "
            "its connections are closed (further breaks of this pod are not reported)"
        )


def _pump(a: socket.socket, b: socket.socket, closed: threading.Event) -> None:
    peers = {a: b, b: a}
    while not closed.is_set():
        readable, _, broken = select.select(list(peers), [], list(peers), 1.0)
        if broken:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            peers[sock].sendall(data)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False
