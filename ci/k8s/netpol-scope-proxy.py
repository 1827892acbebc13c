#!/usr/bin/env python3
"""A read-only, one-namespace view of the Kubernetes API for the NetworkPolicy engine.

Used by ci/k8s/netpol-up.sh only when NETPOL_NAMESPACE is set: the engine (kube-router's policy
controller) then sees the pods, NetworkPolicies and Namespace of that one namespace, so it builds
firewall chains for those pods only and leaves every other pod of a shared cluster alone (for a lab
run beside other tests). Without NETPOL_NAMESPACE the engine talks to the API server directly and
covers the whole node, as it would in CI.

Listens on a loopback address with plain HTTP, no authentication (pods cannot reach the host's
loopback: route_localnet is 0); forwards GET requests only to the API server with the client
certificate it is given; any other method is refused, so the engine cannot change anything through it.
Rewrites three cluster-wide collections (list and watch alike, so the informers work unchanged):
  /api/v1/pods                               -> /api/v1/namespaces/NS/pods
  /apis/networking.k8s.io/v1/networkpolicies -> /apis/networking.k8s.io/v1/namespaces/NS/networkpolicies
  /api/v1/namespaces                         -> the same, with fieldSelector=metadata.name=NS
Responses (watch streams too) are relayed as they arrive, re-chunked.
"""

import argparse
import http.client
import http.server
import ssl
import sys
import urllib.parse

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
    "accept-encoding",
}


def rewrite(path: str, ns: str) -> str:
    parts = urllib.parse.urlsplit(path)
    p = parts.path.rstrip("/") or "/"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if p == "/api/v1/pods":
        p = f"/api/v1/namespaces/{ns}/pods"
    elif p == "/apis/networking.k8s.io/v1/networkpolicies":
        p = f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
    elif p == "/api/v1/namespaces":
        query = [(k, v) for k, v in query if k != "fieldSelector"]
        query.append(("fieldSelector", f"metadata.name={ns}"))
    return urllib.parse.urlunsplit(("", "", p, urllib.parse.urlencode(query), ""))


def make_handler(args, ctx, host, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "netpol-scope-proxy"

        def log_message(self, fmt, *a):  # one short line per request, on stderr (the log file)
            if args.verbose:
                sys.stderr.write(f"{self.log_date_time_string()} {fmt % a}\n")

        def refuse(self):
            body = b"read-only proxy: only GET is forwarded\n"
            self.send_response(403)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_PUT = do_PATCH = do_DELETE = refuse

        def do_GET(self):
            target = rewrite(self.path, args.namespace)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=args.timeout)
            try:
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            except OSError as e:
                conn.close()
                self.send_error(502, f"API server: {e}")
                return
            try:
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True
            finally:
                conn.close()

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:18089", help="loopback HOST:PORT to serve on")
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--server", required=True, help="API server URL, https://HOST:PORT")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--timeout", type=float, default=600.0, help="idle seconds before a relay gives up")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    lhost, lport = args.listen.rsplit(":", 1)
    if lhost not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("refusing to listen on a non-loopback address")
    up = urllib.parse.urlsplit(args.server)
    if up.scheme != "https" or not up.hostname:
        sys.exit("--server must be https://HOST:PORT")
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)

    srv = http.server.ThreadingHTTPServer(
        (lhost, int(lport)), make_handler(args, ctx, up.hostname, up.port or 443)
    )
    srv.daemon_threads = True
    sys.stderr.write(f"serving {args.listen}: namespace {args.namespace} of {args.server}, GET only\n")
    sys.stderr.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
