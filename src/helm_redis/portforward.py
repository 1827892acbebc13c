"""Reaching pods from outside the cluster: one local listener per pod, tunnelled through the Kubernetes API.

Each accepted connection opens its own port-forward stream to the pod *by name*, so a pod that is
deleted and recreated (new IP, same name) is reached again by the next connection. `address_map`
turns the addresses Redis announces (pod IPs) into these local listeners, as redis-py's
`address_remap` does for cluster clients.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable

from .nodes import NodeAddress


class PodForwarder:
    def __init__(self, api, namespace: str, port: int, pod_ips: Callable[[], dict[str, str]]) -> None:
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
        from kubernetes.stream import portforward

        forward = None
        try:
            with self._opening:
                forward = portforward(
                    self.api.connect_get_namespaced_pod_portforward, pod, self.namespace, ports=str(self.port)
                )
            remote = forward.socket(self.port)
            remote.setblocking(True)
            _pump(client, remote, self._closed)
        except Exception:  # the pod is gone or not ready: the client sees a closed connection
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()
            if forward is not None:
                with contextlib.suppress(Exception):
                    forward.close()


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
