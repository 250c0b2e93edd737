"""The kubeconfig a plugin on the node uses, written from the installer pod's service account.

Same shape as Istio's: cluster ``local`` at ``https://$KUBERNETES_SERVICE_HOST:PORT`` with the
service account's ``ca.crt``, a user with its token, one context set as current. JSON, which
every kubeconfig reader accepts; mode 0600.

The token is a credential for the API server: no message of this module (nor of the
installer, which only names the file it wrote) ever holds it, the CA or the document. A
broken token or CA is reported by its file name and what is wrong with it.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnisdk._files import FileTooLargeError, NotARegularFileError, read_bounded
from cnisdk._install.cniconfig import render_json
from cnisdk._install.spec import InstallError, InstallSpec

__all__ = [
    "CONTEXT_PREFIX",
    "MAX_CA_BYTES",
    "MAX_TOKEN_BYTES",
    "is_our_kubeconfig",
    "kubeconfig_document",
    "kubeconfig_host_path",
    "with_kubeconfig",
]

CONTEXT_PREFIX = "cnisdk-"
MAX_TOKEN_BYTES = 64 << 10
"""Service account tokens are JWTs of one or two KiB."""
MAX_CA_BYTES = 1 << 20
# RFC 6750's b64token: what an Authorization: Bearer header may carry.
_BEARER_TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def _read(path: Path, limit: int, what: str) -> bytes:
    try:
        return read_bounded(path, limit)
    except (NotARegularFileError, FileTooLargeError) as exc:
        raise InstallError(f"the service account {what} {exc}") from None
    except OSError as exc:
        why = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror or type(exc).__name__
        raise InstallError(f"cannot read the service account {what} {path}: {why}") from None


def _server(environ: Mapping[str, str]) -> str:
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise InstallError(
            "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set to write a "
            "kubeconfig (they are in every pod; outside one, export them)"
        )
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise InstallError(f"KUBERNETES_SERVICE_PORT is not a port number: {port!r}")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not host.isascii() or _HOST_NAME.fullmatch(host) is None:
            raise InstallError(
                f"KUBERNETES_SERVICE_HOST is not a host name or IP address: {host!r}"
            ) from None
        return f"https://{host}:{int(port)}"
    if address.version == 6:
        return f"https://[{address}]:{int(port)}"
    return f"https://{address}:{int(port)}"


def kubeconfig_document(sa_dir: Path, name: str, environ: Mapping[str, str]) -> bytes:
    """A kubeconfig from a service account dir (``token``, ``ca.crt``).

    :raises InstallError: naming the file and what is wrong with it, never its content.
    """
    server = _server(environ)
    token_path, ca_path = sa_dir / "token", sa_dir / "ca.crt"
    token = _read(token_path, MAX_TOKEN_BYTES, "token").strip()
    if not token:
        raise InstallError(f"the service account token {token_path} is empty")
    if _BEARER_TOKEN.fullmatch(token) is None:
        raise InstallError(
            f"the service account token {token_path} is not a bearer token ({len(token)} "
            "bytes, with characters a token cannot hold)"
        )
    ca = _read(ca_path, MAX_CA_BYTES, "CA")
    if _PEM_CERTIFICATE not in ca:
        raise InstallError(f"the service account CA {ca_path} holds no PEM certificate")
    context = f"{CONTEXT_PREFIX}{name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token.decode("ascii")}}],
        "contexts": [{"name": context, "context": {"cluster": "local", "user": name}}],
        "current-context": context,
    }
    return render_json(doc)


def is_our_kubeconfig(path: Path, name: str) -> bool:
    """Whether ``path`` is a kubeconfig this module wrote for plugin type ``name``."""
    try:
        doc = json.loads(read_bounded(path, MAX_TOKEN_BYTES + 2 * MAX_CA_BYTES))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("current-context") == f"{CONTEXT_PREFIX}{name}"


def kubeconfig_host_path(spec: InstallSpec, entries: Sequence[Mapping[str, Any]]) -> str:
    """The node path the kubeconfig goes to: ``--kubeconfig``, else the entry's, else
    ``<conf dir>/ZZZ-<type>-kubeconfig``."""
    if spec.kubeconfig:
        return spec.kubeconfig
    for entry in entries:
        if isinstance(entry.get("kubeconfig"), str):
            return str(entry["kubeconfig"])
        legacy = entry.get("kubernetes")
        if isinstance(legacy, Mapping) and isinstance(legacy.get("kubeconfig"), str):
            return str(legacy["kubeconfig"])
    if spec.conf_dir is None:
        raise InstallError("--kubeconfig-from-serviceaccount needs --conf-dir or --kubeconfig")
    # Like Istio <= 1.23: next to the configs; runtimes ignore names without a config suffix.
    return str(spec.to_host(spec.conf_dir) / f"ZZZ-{spec.types[0]}-kubeconfig")


def with_kubeconfig(entries: Sequence[Mapping[str, Any]], path: str) -> list[dict[str, Any]]:
    """The entries, each naming the kubeconfig unless it names one already."""
    out = []
    for entry in entries:
        legacy = entry.get("kubernetes")
        has_legacy = isinstance(legacy, Mapping) and "kubeconfig" in legacy
        if "kubeconfig" not in entry and not has_legacy:
            entry = {**entry, "kubeconfig": path}
        out.append(dict(entry))
    return out
