"""Both shims against a fake agent that misbehaves: garbage, oversized frames, answers cut
short, silence. A shim never crashes and never hangs: ADD answers CNI error 11 (it may have
run), other verbs fall back; the Python and the compiled shim print the same bytes."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_kit import chained_config, cni_env, run_plugin, write_exec_launchers, write_shims

from cnisdk._agent_protocol import MAX_ANSWER_HEAD, MAX_FRAME, encode_frame

Behaviour = Callable[[socket.socket], None]


class FakeAgent:
    """A Unix socket server that reads each request and then does ``behave(conn)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.behave: Behaviour = lambda conn: None
        self.requests: list[tuple[bytes, bytes, bytes]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(16)
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(conn)
            thread = threading.Thread(target=self._one, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(10)
            self.requests.append((self._frame(conn), self._frame(conn), self._frame(conn)))
            self.behave(conn)
        conn.close()  # its own thread's socket: nobody else is blocked on it

    @staticmethod
    def _frame(conn: socket.socket) -> bytes:
        def exactly(size: int) -> bytes:
            data = b""
            while len(data) < size:
                chunk = conn.recv(size - len(data))
                if not chunk:
                    raise OSError("client went away")
                data += chunk
            return data

        return exactly(int.from_bytes(exactly(4), "big"))

    def close(self) -> None:
        """Stop every thread, then close every socket.

        Never close a socket under a thread blocked on it: the thread stays in ``accept`` or
        ``recv`` on the old socket, and when the kernel restarts that call (after a signal or a
        stop) it runs on the fd *number*, which by then names some other socket of this
        process (it once took the e2e API stand-in's connections). ``shutdown`` wakes them.
        """
        self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        for conn in self._open:
            with contextlib.suppress(OSError):  # most are closed already
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(10)
        alive = [t for t in (self._thread, *self._threads) if t.is_alive()]
        if not alive:
            self._sock.close()
            for conn in self._open:
                conn.close()
        assert alive == [], "fake agent threads did not stop"


@pytest.fixture(scope="module")
def fake(sock_dir: Path) -> Iterator[FakeAgent]:
    agent = FakeAgent(sock_dir / "fake.sock")
    yield agent
    agent.close()


@pytest.fixture(scope="module")
def shims(sock_dir: Path, fake: FakeAgent, compiled_shim: Path) -> dict[str, dict[str, Path]]:
    """``{"exec" | "fail": {"python": shim, "compiled": shim}}``, waiting 1 s for answers."""
    out: dict[str, dict[str, Path]] = {"exec": {}, "fail": {}}
    for fallback in ("exec", "fail"):
        for kind, binary in (("python", None), ("compiled", compiled_shim)):
            bin_dir = sock_dir / f"{fallback}-{kind}"
            write_shims(
                bin_dir,
                fake.path,
                ["passthrough"],
                fallback,  # type: ignore[arg-type]
                shim_binary=binary,
                answer_timeout=1,
            )
            out[fallback][kind] = bin_dir / "passthrough"
    write_exec_launchers(sock_dir / "exec", ["passthrough"])
    return out


def both(shims: dict[str, Path], command: str) -> bytes:
    """Run the Python and the compiled shim; they must agree. Returns stdout."""
    env = cni_env(command)
    stdin = chained_config("passthrough")
    results = {kind: run_plugin(path, env, stdin, timeout=30) for kind, path in shims.items()}
    python, compiled = results["python"], results["compiled"]
    assert (python.stdout, python.returncode) == (compiled.stdout, compiled.returncode)
    assert b"Traceback" not in python.stderr
    return python.stdout


def failed_during_add(fake: FakeAgent, why: str) -> dict[str, object]:
    return {
        "code": 11,
        "msg": f"cnisdk agent at {fake.path} failed during ADD ({why}); the ADD may be partly "
        "applied and was not retried",
    }


def send(*frames: bytes) -> Behaviour:
    return lambda conn: conn.sendall(b"".join(frames))


BROKEN_ANSWERS: dict[str, tuple[Behaviour, str]] = {
    "close-at-once": (
        lambda conn: None,
        "the agent closed the connection before a complete answer",
    ),
    "garbage": (send(b"\x00\x00\x00\x05hello"), "malformed answer"),
    "random-bytes": (send(b"\x93\x01\xfe" * 50), "malformed answer"),
    "oversized-head": (send(b"\xff\xff\xff\xff"), "malformed answer"),
    "head-just-too-big": (send((MAX_ANSWER_HEAD + 1).to_bytes(4, "big")), "malformed answer"),
    "oversized-stdout": (
        send(encode_frame(b"ok 0"), (MAX_FRAME + 1).to_bytes(4, "big")),
        "malformed answer",
    ),
    "exit-code-too-big": (send(encode_frame(b"ok 256")), "malformed answer"),
    "exit-code-negative": (send(encode_frame(b"ok -1")), "malformed answer"),
    "exit-code-missing": (send(encode_frame(b"ok")), "malformed answer"),
    "exit-code-junk": (send(encode_frame(b"ok 1x")), "malformed answer"),
    "unknown-status": (send(encode_frame(b"maybe 0")), "malformed answer"),
    "version-1-answer": (send(encode_frame(b'{"v":1,"status":"ok"}')), "malformed answer"),
    "cut-in-stdout": (
        send(encode_frame(b"ok 0"), (100).to_bytes(4, "big"), b"{"),
        "the agent closed the connection before a complete answer",
    ),
    "no-stderr-frame": (
        send(encode_frame(b"ok 0"), encode_frame(b"{}")),
        "the agent closed the connection before a complete answer",
    ),
    "silence": (lambda conn: conn.recv(1), "no answer within 1 s"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_ANSWERS))
def test_broken_answers(case: str, fake: FakeAgent, shims: dict[str, dict[str, Path]]) -> None:
    fake.behave, why = BROKEN_ANSWERS[case]
    # ADD may have run: never re-run, error 11 whatever the fallback.
    for fallback in ("exec", "fail"):
        assert json.loads(both(shims[fallback], "ADD")) == failed_during_add(fake, why)
    # DEL is repeatable: the fallback runs it in exec mode, or says why it cannot.
    assert both(shims["exec"], "DEL") == b""
    assert json.loads(both(shims["fail"], "DEL")) == {
        "code": 11,
        "msg": f"cnisdk agent unavailable at {fake.path}: {why}",
    }


def test_the_request_as_sent(fake: FakeAgent, shims: dict[str, dict[str, Path]]) -> None:
    fake.behave = send(encode_frame(b"ok 0"), encode_frame(b"{}"), encode_frame(b""))
    fake.requests.clear()
    both(shims["fail"], "ADD")
    assert len(fake.requests) == 2
    python, compiled = fake.requests
    assert python[0] == compiled[0] == b'{"v":2,"op":"request","type":"passthrough"}'
    assert python[2] == compiled[2] == chained_config("passthrough")
    sent = {k.encode(): v.encode() for k, v in cni_env("ADD").items()}
    assert compiled[1] == b"".join(k + b"=" + v + b"\0" for k, v in sent.items())
    # Under the C locale Python adds LC_CTYPE=C.UTF-8 to its environment (PEP 538) before
    # any code runs; an exec-mode plugin sees the same.
    env = dict(entry.split(b"=", 1) for entry in python[1].split(b"\0") if entry)
    assert env in (sent, {**sent, b"LC_CTYPE": b"C.UTF-8"})


def test_exit_codes_and_both_streams_pass_through(
    fake: FakeAgent, shims: dict[str, dict[str, Path]]
) -> None:
    fake.behave = send(encode_frame(b"ok 42"), encode_frame(b"out\x00put"), encode_frame(b"log"))
    for kind, path in shims["fail"].items():
        done = run_plugin(path, cni_env("ADD"), b"{}")
        assert (done.returncode, done.stdout, done.stderr) == (42, b"out\x00put", b"log"), kind


def test_agent_messages_are_escaped_as_go_does(
    fake: FakeAgent, shims: dict[str, dict[str, Path]]
) -> None:
    # The agent's words end up in a CNI error document: whatever bytes they are, the document
    # is what Go's encoder writes (HTML-safe, control characters escaped, bad UTF-8 as \ufffd).
    text = 'é \u2028 <&> "q" \\ \t\n\x01\x7f'.encode() + b" \xff\xc3(\xed\xa0\x80"
    fake.behave = send(encode_frame(b"unserved " + text))
    expected = (
        b'{\n    "code": 11,\n    "msg": "cnisdk agent unavailable at '
        + str(fake.path).encode()
        + b": unserved: "
        + 'é \\u2028 \\u003c\\u0026\\u003e \\"q\\" \\\\ \\t\\n\\u0001\x7f'.encode()
        + b' \\ufffd\\ufffd(\\ufffd\\ufffd\\ufffd"\n}'
    )
    assert both(shims["fail"], "DEL") == expected
    # Not-run answers take the fallback, for ADD too: it did not run.
    assert (
        both(shims["exec"], "ADD")
        == run_plugin(
            shims["exec"]["python"].parent.parent / "exec" / "passthrough",
            cni_env("ADD"),
            chained_config("passthrough"),
        ).stdout
    )


def test_a_refusal_before_the_request_is_read(
    fake: FakeAgent, shims: dict[str, dict[str, Path]], sock_dir: Path
) -> None:
    # What the agent does for a peer it does not serve: answer at once, read nothing.
    refuser = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = sock_dir / "refuser.sock"
    refuser.bind(str(path))
    refuser.listen(4)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = refuser.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.sendall(encode_frame(b"refused go away"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for kind in ("python", "compiled"):
            shim = shims["fail"][kind]
            bin_dir = sock_dir / f"refused-{kind}"
            binary = None if kind == "python" else shim
            write_shims(bin_dir, path, ["passthrough"], "fail", shim_binary=binary)
        big = json.dumps({"pad": "x" * (4 << 20)}).encode()  # more than a socket buffer
        for stdin in (chained_config("passthrough"), big):
            outputs = {
                run_plugin(
                    sock_dir / f"refused-{kind}" / "passthrough", cni_env("ADD"), stdin
                ).stdout
                for kind in ("python", "compiled")
            }
            assert outputs == {
                b'{\n    "code": 11,\n    "msg": "cnisdk agent unavailable at '
                + str(path).encode()
                + b': refused: go away"\n}'
            }
    finally:
        stop.set()
        refuser.shutdown(socket.SHUT_RDWR)  # wakes the accept loop (see FakeAgent.close)
        thread.join(10)
        assert not thread.is_alive()
        refuser.close()
