"""A Kubernetes API stand-in that serves pod LIST and WATCH (and GET) for the pod-cache tests.

``/api/v1/pods?fieldSelector=spec.nodeName=N`` lists the pods on node N with the current
``resourceVersion``; with ``watch=1`` it streams events newer than the given version, one JSON
object per line, until :meth:`WatchStub.drop_watches` or close. A version older than
:meth:`WatchStub.expire` left answers an ``ERROR`` event with a 410 Status, as the API does.

For hostile-stream tests, :meth:`WatchStub.inject` puts raw bytes into the stream (garbage,
oversized or malformed events), ``list_body`` replaces the LIST answer, and
``watch_ends_at_once`` makes every watch end after sending what is pending.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_POD = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/?]+)\Z")


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        stub: WatchStub = self.server.stub
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with stub.cond:
            stub.requests.append(self.path)
        if match := _POD.match(url.path):
            pod = stub.pods.get(match.groups())
            self._json(200 if pod else 404, pod or {"kind": "Status", "code": 404})
            return
        if url.path != "/api/v1/pods":
            self._json(404, {"kind": "Status", "code": 404})
            return
        node = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
        if query.get("watch") != "1":
            if stub.list_body is not None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(stub.list_body)))
                self.end_headers()
                self.wfile.write(stub.list_body)
                return
            with stub.cond:
                items = [p for p in stub.pods.values() if p["spec"].get("nodeName") == node]
                body = {
                    "kind": "PodList",
                    "metadata": {"resourceVersion": str(stub.version)},
                    "items": copy.deepcopy(items),
                }
            self._json(200, body)
            return
        self._watch(stub, node, int(query.get("resourceVersion") or 0))

    def _watch(self, stub: WatchStub, node: str, since: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()  # no length: the stream ends when the connection closes
        with stub.cond:
            generation = stub.generation
            if since < stub.expired_before:
                status = {"kind": "Status", "code": 410, "reason": "Expired"}
                self.wfile.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
                return
            stub.watching += 1
            stub.cond.notify_all()
        try:
            while True:
                # Take what is pending under the lock, write it without: a client that reads
                # slowly (or not at all) must never hold up GETs, LISTs or other watches.
                with stub.cond:
                    if stub.closing or stub.generation != generation:
                        return
                    pending = [event for event in stub.events if event[0] > since]
                    if not pending and not stub.watch_ends_at_once:
                        stub.cond.wait(0.2)
                        continue
                    ends = stub.watch_ends_at_once
                for version, kind, pod in pending:
                    if kind == "RAW":
                        self.wfile.write(pod["raw"])
                    elif pod["spec"].get("nodeName") == node:
                        self.wfile.write(json.dumps({"type": kind, "object": pod}).encode() + b"\n")
                    since = version
                self.wfile.flush()
                if ends:
                    return
        except OSError:
            pass
        finally:
            with stub.cond:
                stub.watching -= 1


class WatchStub:
    """The stand-in; use as a context manager. ``url`` is its base URL (plain HTTP)."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.version = 100
        self.expired_before = 0
        self.generation = 0
        self.watching = 0
        self.closing = False
        self.requests: list[str] = []
        self.list_body: bytes | None = None
        self.watch_ends_at_once = False
        self.cond = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.stub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def put(self, pod: dict[str, Any]) -> None:
        """Create or update ``pod`` (an ADDED or MODIFIED event)."""
        with self.cond:
            self.version += 1
            pod = copy.deepcopy(pod)
            pod["metadata"]["resourceVersion"] = str(self.version)
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            kind = "MODIFIED" if key in self.pods else "ADDED"
            self.pods[key] = pod
            self.events.append((self.version, kind, pod))
            self.cond.notify_all()

    def inject(self, raw: bytes) -> None:
        """Send ``raw`` verbatim on the watch streams (at its place among the events)."""
        with self.cond:
            self.version += 1
            self.events.append((self.version, "RAW", {"raw": raw}))
            self.cond.notify_all()

    def delete(self, namespace: str, name: str) -> None:
        with self.cond:
            self.version += 1
            pod = self.pods.pop((namespace, name))
            self.events.append((self.version, "DELETED", pod))
            self.cond.notify_all()

    def expire(self) -> None:
        """Versions up to now are too old to watch from (410 Gone); open watches end."""
        with self.cond:
            self.expired_before = self.version + 1
            self.generation += 1
            self.cond.notify_all()

    def drop_watches(self) -> None:
        """End the open watch streams (a load balancer cutting connections)."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def lists(self) -> int:
        return sum(1 for r in self.requests if r.startswith("/api/v1/pods?") and "watch" not in r)

    def gets(self) -> int:
        return sum(1 for r in self.requests if r.startswith("/api/v1/namespaces/"))

    def __enter__(self) -> WatchStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
