"""``cnisdk install --watch``: keep the install in place, say whether it is, uninstall at the end.

Every ``interval`` seconds a poll asks what is out of place now (:func:`out_of_place`): does
the file a runtime uses hold our entries as install writes them, are the launchers and the
kubeconfig (with the current service account token) what install writes? Nothing: ready.
Something: not ready, install runs, and the next poll, at once, looks at the result, so
readiness turns true only once a poll has seen our entries in the file a runtime uses, and
false at the first poll that does not. Nothing depends on having seen a change happen, so a
rewrite that lands right after our own write is found by the next poll like any other.

Polling rather than inotify: it needs no ctypes, sees a service account token swapped through
its ``..data`` symlink, and works on any hostPath file system; reading a few small files twice
a second is negligible.

A rewrite of the config is at most one per ``throttle`` seconds; more than ``fight_limit`` in
a row, each within ``2 * throttle`` of the last, is reported as another component fighting
over the config (Istio's hint for Cilium: ``cni.exclusive=false``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from cnisdk._files import write_atomic
from cnisdk._health import Answer, HealthServer
from cnisdk._install.install import install, out_of_place, uninstall
from cnisdk._install.spec import InstallError, InstallSpec, NoPrimaryConfig, Outcome

__all__ = ["Readiness", "watch"]


class Readiness:
    """Whether the install is in place: ``GET /readyz`` answers 200 while it is and 503
    otherwise (``/healthz``: 200 while the process runs), and ``ready_file`` exists while it is.

    :raises OSError: ``address`` cannot be bound.
    """

    def __init__(self, address: tuple[str, int] | None, ready_file: Path | None) -> None:
        self.ready = False
        self._file = ready_file
        self._server: HealthServer | None = None
        if address is not None:
            self._server = HealthServer(
                address,
                {
                    "/readyz": lambda: Answer(
                        self.ready, b"ok\n" if self.ready else b"not ready\n"
                    ),
                    "/healthz": lambda: Answer(True, b"ok\n"),
                },
            )

    @property
    def port(self) -> int | None:
        """The port ``/readyz`` is served on (``None``: not served)."""
        return self._server.port if self._server is not None else None

    def set(self, ready: bool) -> None:
        """Say whether the install is in place."""
        if ready == self.ready:
            return
        # Both signals agree whenever a prober looks: the file before the flag when turning
        # ready, the flag before the file when not.
        if ready:
            if self._file is not None:
                self._file.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self._file, b"ready\n", 0o644)
            self.ready = True
        else:
            self.ready = False
            if self._file is not None:
                self._file.unlink(missing_ok=True)

    def close(self) -> None:
        """Not ready any more; stop serving."""
        self.set(False)
        if self._server is not None:
            self._server.close()
            self._server = None


def watch(
    spec: InstallSpec,
    stop: threading.Event,
    ready: Readiness,
    *,
    interval: float = 0.5,
    throttle: float = 5.0,
    fight_limit: int = 5,
    report: Callable[[str], None] = print,
) -> Outcome:
    """Keep the install in place until ``stop`` is set, then uninstall.

    :return: what the uninstall did.
    :raises InstallError: the uninstall failed (``OSError``: a file could not be changed).
    """
    last_rewrite = float("-inf")
    streak = 0
    chained = False
    waiting = ""
    try:
        while not stop.is_set():
            try:
                drift = out_of_place(spec)
                if not drift:
                    ready.set(True)
                    chained = True
                    stop.wait(interval)
                    continue
                ready.set(False)
                if drift.config is not None and chained:
                    since = time.monotonic() - last_rewrite
                    if since < throttle:
                        stop.wait(throttle - since)
                        continue  # look again: the config may be back, or changed more
                outcome = install(spec, settle=False)
            except NoPrimaryConfig as exc:
                ready.set(False)
                if str(exc) != waiting:
                    report(f"waiting: {exc}")
                    waiting = str(exc)
                stop.wait(interval)
                continue
            except (InstallError, OSError) as exc:
                ready.set(False)
                report(f"install failed, retrying: {exc}")
                stop.wait(max(interval, throttle))
                continue
            waiting = ""
            if outcome.configs:
                now = time.monotonic()
                if chained:
                    streak = streak + 1 if now - last_rewrite < 2 * throttle else 1
                    report(f"re-asserted {outcome.config} (another component rewrote it)")
                    if streak > fight_limit:
                        report(
                            f"warning: the config in {spec.conf_dir} was rewritten {streak} "
                            "times in a row; another component keeps removing our entry (for "
                            "Cilium set cni.exclusive=false)"
                        )
                else:
                    for path in outcome.configs:
                        report(f"wrote {path}")
                last_rewrite = now
            for path in outcome.files:
                report(f"wrote {path}")
            for note in outcome.notes if outcome.changed else ():
                report(note)
            chained = chained or outcome.config is not None
    finally:
        ready.set(False)
    outcome = uninstall(spec)
    for path in outcome.changed:
        report(f"removed {path}" if path not in outcome.configs else f"took our part out of {path}")
    for note in outcome.notes:
        report(note)
    return outcome
