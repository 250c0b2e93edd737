"""Credentials for the Kubernetes API: a kubeconfig file or the pod's own service account.

:func:`load_kubeconfig` reads a kubeconfig (Istio's node agent writes one with a ``token`` and
``certificate-authority-data``); :func:`load_incluster_config` the service account of the pod
this process runs in.  Files are read once, with a size cap, and only if they are regular
files.

Errors name the file and the field, never their content: a parser's message (which quotes the
offending line, possibly the token's) is reduced to its position and kind, and names, paths
and URLs taken from the file pass through :func:`~cnisdk_istio_redirect._redact.scrub`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cnisdk._files import FileTooLargeError, NotARegularFileError, read_bounded
from cnisdk_istio_redirect._redact import display_url, scrub

__all__ = [
    "DEFAULT_SERVICE_ACCOUNT_DIR",
    "KubeConfig",
    "KubeConfigError",
    "load_incluster_config",
    "load_kubeconfig",
]

DEFAULT_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_MAX_FILE_BYTES = 1 << 20
"""Cap on a kubeconfig, token or CA file."""


class KubeConfigError(ValueError):
    """Credentials could not be loaded: a missing, unreadable or invalid file or setting."""


@dataclass(frozen=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it.

    :ivar server: base URL, ``https://host:port`` (a path prefix is kept) or ``http://...``.
    :ivar token: bearer token, or ``None`` for no ``Authorization`` header.
    :ivar ca_pem: PEM CA bundle to verify the server with; ``None`` uses the system store.
    :ivar insecure_skip_tls_verify: do not verify the server certificate at all.
    :ivar source: where this came from (a file path or ``in-cluster``), for messages.
    """

    server: str
    token: str | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    source: str = ""

    @property
    def where(self) -> str:
        """:attr:`server` for messages (never with ``user:password@`` or a query)."""
        return display_url(self.server)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values no message may contain."""
        return (self.token,) if self.token else ()

    def ssl_context(self) -> ssl.SSLContext:
        """The client TLS context for :attr:`server` (unused for ``http``).

        :raises KubeConfigError: if :attr:`ca_pem` holds no usable certificate.
        """
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if self.ca_pem is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cadata=self.ca_pem)
        except (ssl.SSLError, ValueError):
            # The SSL library's text is not shown: it may describe what the data holds.
            raise KubeConfigError(
                f"{scrub(self.source) or 'kubeconfig'}: the certificate authority is not a "
                "valid PEM certificate"
            ) from None


# --------------------------------------------------------------------------- loading


def _shown(text: str) -> str:
    """A name or path from a kubeconfig, for a message: scrubbed, quoted."""
    return repr(scrub(text, limit=120))


def _check_server(server: Any, where: str) -> str:
    if not isinstance(server, str) or not server:
        raise KubeConfigError(f"{where}: no server URL")
    if not server.isascii() or not server.isprintable() or " " in server:
        raise KubeConfigError(f"{where}: server URL holds spaces or non-ASCII characters")
    try:
        parts = urlsplit(server)
        scheme, hostname, userinfo = parts.scheme, parts.hostname, "@" in parts.netloc
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        scheme, hostname, userinfo = "", None, "@" in server
    if userinfo:
        # The URL itself carries credentials: never echo it, and do not send them.
        raise KubeConfigError(
            f"{where}: server URL carries credentials (user:password@); use token or tokenFile"
        )
    if scheme not in ("http", "https") or not hostname:
        raise KubeConfigError(f"{where}: server {_shown(server)} is not an http(s)://host URL")
    return server.rstrip("/")


def _read_text(path: Path, what: str, where: str) -> str:
    """A small text file named in a kubeconfig; errors name it, never quote it."""
    shown = scrub(str(path), limit=200)
    try:
        data = read_bounded(path, _MAX_FILE_BYTES)
    except FileNotFoundError:
        raise KubeConfigError(f"{where}: {what} {shown} does not exist") from None
    except NotARegularFileError:
        raise KubeConfigError(f"{where}: {what} {shown} is not a regular file") from None
    except FileTooLargeError:
        raise KubeConfigError(
            f"{where}: {what} {shown} is larger than {_MAX_FILE_BYTES} bytes"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KubeConfigError(f"{where}: cannot read {what} {shown}: {reason}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KubeConfigError(f"{where}: {what} {shown} is not UTF-8 text") from None


def _read_token(path: Path, where: str) -> str:
    token = _read_text(path, "token file", where).strip()
    if not token:
        raise KubeConfigError(f"{where}: token file {scrub(str(path), limit=200)} is empty")
    return token


def _named(entries: Any, name: str, kind: str, where: str) -> Mapping[str, Any]:
    if not isinstance(entries, list):
        raise KubeConfigError(f"{where}: {kind}s is missing or not a list")
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            body = entry.get(kind)
            if not isinstance(body, Mapping):
                raise KubeConfigError(f"{where}: {kind} {_shown(name)} has no {kind} section")
            return body
    raise KubeConfigError(f"{where}: {kind} {_shown(name)} not found")


def _parse_document(text: str, where: str) -> Mapping[str, Any]:
    # Parser messages quote the offending line, which may be the token's: only the position
    # and the kind of error are shown.
    doc: Any
    try:
        if text.lstrip().startswith("{"):
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                # json's messages are fixed phrases ("Expecting ',' delimiter"), no content.
                raise KubeConfigError(
                    f"{where}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                ) from None
        else:
            import yaml

            try:
                doc = yaml.safe_load(text)
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise KubeConfigError(f"{where}: invalid YAML{at} ({type(exc).__name__})") from None
            except yaml.YAMLError as exc:
                raise KubeConfigError(f"{where}: invalid YAML ({type(exc).__name__})") from None
    except RecursionError:
        raise KubeConfigError(f"{where}: nested too deeply to be a kubeconfig") from None
    if not isinstance(doc, Mapping):
        raise KubeConfigError(f"{where}: not a kubeconfig (expected a mapping at the top)")
    return doc


def _decode_ca_data(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise KubeConfigError(f"{where}: {key} is not a string")
    try:
        return base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise KubeConfigError(f"{where}: {key} is not base64-encoded PEM") from None


def _checked(config: KubeConfig, ca_from: str) -> KubeConfig:
    if config.ca_pem is not None:
        try:
            config.ssl_context()
        except KubeConfigError:
            raise KubeConfigError(
                f"{ca_from} is not a valid PEM certificate (the SSL library refuses it)"
            ) from None
    return config


def load_kubeconfig(path: str | os.PathLike[str], *, context: str | None = None) -> KubeConfig:
    """Load a kubeconfig file (YAML or JSON).

    The context is ``context`` or the file's ``current-context``; it names a cluster
    (``server``, ``certificate-authority-data`` (base64 PEM) or ``certificate-authority`` (a
    file), ``insecure-skip-tls-verify``) and a user (``tokenFile`` or ``token``; as in
    client-go the file wins when both are set).  Relative file paths are resolved against the
    kubeconfig's directory.  Files are read now, once: a CNI plugin lives for one request.

    :param path: the kubeconfig file.
    :param context: a context name overriding ``current-context``.
    :returns: the loaded configuration.
    :raises KubeConfigError: if the file or anything it refers to is missing or invalid, or
        the user authenticates only in an unsupported way (client certificates, exec,
        auth-provider).
    """
    file = Path(path)
    where = f"kubeconfig {scrub(str(file), limit=200)}"
    doc = _parse_document(_read_text(file, "file", "kubeconfig"), where)
    base = file.parent

    ctx_name = context if context is not None else doc.get("current-context")
    if not isinstance(ctx_name, str) or not ctx_name:
        raise KubeConfigError(f"{where}: no current-context set")
    ctx = _named(doc.get("contexts"), ctx_name, "context", where)
    cluster_name = ctx.get("cluster")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise KubeConfigError(f"{where}: context {_shown(ctx_name)} names no cluster")
    cluster = _named(doc.get("clusters"), cluster_name, "cluster", where)
    server = _check_server(cluster.get("server"), f"{where}, cluster {_shown(cluster_name)}")

    ca_pem: str | None = None
    ca_from = ""
    ca_data = cluster.get("certificate-authority-data")
    ca_file = cluster.get("certificate-authority")
    if ca_data:
        ca_pem = _decode_ca_data(ca_data, where, "certificate-authority-data")
        ca_from = f"{where}: certificate-authority-data"
    elif ca_file:
        if not isinstance(ca_file, str):
            raise KubeConfigError(f"{where}: certificate-authority is not a path")
        ca_pem = _read_text(base / ca_file, "certificate-authority file", where)
        ca_from = f"{where}: certificate-authority file {scrub(str(base / ca_file), limit=200)}"
    insecure = cluster.get("insecure-skip-tls-verify", False) is True
    if insecure and ca_pem is not None:
        raise KubeConfigError(
            f"{where}: certificate-authority(-data) and insecure-skip-tls-verify are "
            "mutually exclusive"
        )

    token: str | None = None
    user_name = ctx.get("user")
    if isinstance(user_name, str) and user_name:
        user = _named(doc.get("users"), user_name, "user", where)
        token_file = user.get("tokenFile")
        raw_token = user.get("token")
        if token_file:
            if not isinstance(token_file, str):
                raise KubeConfigError(f"{where}: user {_shown(user_name)} tokenFile is not a path")
            token = _read_token(base / token_file, where)
        elif raw_token:
            if not isinstance(raw_token, str):
                raise KubeConfigError(f"{where}: user {_shown(user_name)} token is not a string")
            token = raw_token.strip()
        else:
            other = sorted(
                k
                for k in ("client-certificate", "client-certificate-data", "exec", "auth-provider")
                if user.get(k)
            )
            if other:
                raise KubeConfigError(
                    f"{where}: user {_shown(user_name)} authenticates with "
                    f"{', '.join(other)}, which is not supported; use token or tokenFile"
                )

    return _checked(
        KubeConfig(
            server=server,
            token=token,
            ca_pem=ca_pem,
            insecure_skip_tls_verify=insecure,
            source=str(file),
        ),
        ca_from,
    )


def load_incluster_config(
    *,
    service_account_dir: str | os.PathLike[str] = DEFAULT_SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> KubeConfig:
    """Load the credentials of the pod this process runs in.

    Uses ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` and the service account's
    ``token`` and ``ca.crt`` files.

    :param service_account_dir: directory of ``token`` and ``ca.crt``.
    :param environ: environment to read (default :data:`os.environ`).
    :returns: the loaded configuration (``https``, verified against ``ca.crt``).
    :raises KubeConfigError: outside a cluster, or when a file is missing, empty or invalid.
    """
    env = os.environ if environ is None else environ
    where = "in-cluster config"
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError(
            f"{where}: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
            "(not running in a pod?)"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    sa_dir = Path(service_account_dir)
    token = _read_token(sa_dir / "token", where)
    ca_pem = _read_text(sa_dir / "ca.crt", "CA file", where)
    server = _check_server(f"https://{host}:{port}", where)
    return _checked(
        KubeConfig(server=server, token=token, ca_pem=ca_pem, source="in-cluster"),
        f"{where}: CA file {sa_dir / 'ca.crt'}",
    )
