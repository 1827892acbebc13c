"""`explain`: the errors of the libraries underneath, as the one line the CLI prints (exit 2).

Every error here is a real one, raised by the library against an address where nothing listens."""

from __future__ import annotations

import redis

from helm_redis.errors import explain, one_line


def _raised(call) -> Exception:
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError("no error raised")


def test_a_refused_redis_connection_names_what_failed_and_the_address():
    error = _raised(lambda: redis.Redis("127.0.0.1", 1, socket_connect_timeout=2).ping())

    assert explain(error) == f"cannot talk to a Redis node ({one_line(error)})"
    assert "127.0.0.1:1" in explain(error)


def test_the_kubernetes_api_out_of_reach_is_one_line():
    from kubernetes import client

    configuration = client.Configuration(host="https://127.0.0.1:1")
    configuration.retries = 0
    api = client.CoreV1Api(client.ApiClient(configuration))
    error = _raised(lambda: api.list_namespaced_pod("default", _request_timeout=2))

    explained = explain(error)
    assert explained is not None and explained.startswith("cannot reach the Kubernetes API (")
    assert "\n" not in explained and len(explained) < 400


def test_a_refusal_of_the_kubernetes_api_names_its_status():
    from kubernetes.client.exceptions import ApiException

    error = ApiException(status=403, reason="Forbidden")

    assert explain(error).startswith("the Kubernetes API refused a request: 403 Forbidden (")


def test_a_file_error_names_the_file_once():
    error = _raised(lambda: open("/nonexistent/nodes.conf"))  # noqa: SIM115

    assert explain(error) == "cannot use /nonexistent/nodes.conf (No such file or directory)"


def test_a_bug_is_not_explained_away():
    assert explain(KeyError("x")) is None
    assert explain(ValueError("x")) is None


def test_one_line_folds_lines_and_cuts_long_texts():
    assert one_line(RuntimeError("a\n  b\tc")) == "a b c"
    assert len(one_line(RuntimeError("x" * 1000))) == 300
