"""Text fit for an error or a log line when it came from a kubeconfig or an API server.

CNI errors end up in kubelet logs and pod events, readable by far more people than the node's
credentials. So a message never quotes kubeconfig content, a token or a key, nor what a
server sent back about them. Where a message must show something that came from outside (a
path or a name from the kubeconfig, an API server's ``Status`` message, an HTTP library's
error text), it goes through :func:`scrub` first, which removes:

- the credentials this process holds (the bearer token), verbatim or percent-encoded;
- anything shaped like a credential: ``Bearer``/``Basic`` values, the values of
  ``Authorization``/``Cookie``/``token``/``password``-like fields, JSON Web Tokens, PEM
  blocks, ``user:password@`` in URLs, and runs of 32 or more base64 characters that mix
  upper case, lower case and digits throughout (UIDs, names and paths do not);
- control characters (so a server cannot forge log lines);

and then caps the length. Scrubbing comes before the cap, so a cut never leaves half a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["REDACTED", "display_url", "scrub"]

REDACTED = "[redacted]"
_MAX_TEXT = 300
_MIN_SECRET = 4  # shorter "secrets" would blank out ordinary words

_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|digest|negotiate)(\s+)[^\s\"',;}\]]+")
_CREDENTIAL_FIELD = re.compile(
    r"(?i)((?:proxy-)?authorization|set-cookie|cookie|x-auth-token|x-api-key|api[-_]?key"
    r"|access[-_]?token|id[-_]?token|refresh[-_]?token|token|password|passwd|secret"
    r"|client-key(?:-data)?|private[-_]?key)"
    r"([\"'\]\s]*[:=][\s\[\"']*)(?!\[redacted\])[^\s\"',;}\]]+"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"']+@")
_OPAQUE = re.compile(r"[A-Za-z0-9+/_=.-]{32,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")


def _opaque(match: re.Match[str]) -> str:
    # Random base64 mixes cases and digits throughout (about half its characters are upper
    # case or digits); paths, host names and UIDs are mostly lower case.
    run = match.group(0)
    upper = sum(c.isupper() for c in run)
    digits = sum(c.isdigit() for c in run)
    lower = sum(c.islower() for c in run)
    if upper and digits and lower and (upper + digits) * 4 >= len(run):
        return REDACTED
    return run


def scrub(text: str, secrets: Iterable[str | None] = (), *, limit: int = _MAX_TEXT) -> str:
    """``text`` without credentials or control characters, at most ``limit`` characters.

    :param secrets: values known to be secret (the token in use); each is removed wherever it
        appears, also percent-encoded.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, REDACTED)
    text = _PEM.sub(REDACTED, text)
    text = _CONTROL.sub(" ", text)
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _AUTH_SCHEME.sub(rf"\1\2{REDACTED}", text)
    text = _CREDENTIAL_FIELD.sub(rf"\1\2{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _OPAQUE.sub(_opaque, text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def display_url(url: str) -> str:
    """``url`` for messages: no ``user:password@``, no query, no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return scrub(url, limit=120)
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, "", "")), limit=200)
