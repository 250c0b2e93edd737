"""The findings behind ``cnisdk validate``: what a runtime or a plugin would reject in a config.

:func:`validate_paths` reads CNI network config files (``.conf``, ``.conflist``, ``.json``) or
directories of them and returns one :class:`FileReport` per file, each with a list of
:class:`Finding`. Every finding code is listed, with its severity and meaning, in
:data:`CODES`; the codes are stable (a code is never reused for another meaning) so that CI
can match on them. The same table, with examples, is in ``docs/validate.md``.

The package, one job per module:

- ``_findings``: the finding model, the codes, locations.
- ``_document``: reading a file (bounded) and decoding it as Go does; where each key is.
- ``_spec_rules``: the spec's and libcni's rules (CV0xx, CV21x).
- ``_parse``: one file through the static checks.
- ``_reference``: config models of the reference plugins (containernetworking/plugins).
- ``_keys``: keys a plugin does not read (typos) and keys newer than a release.
- ``_plugins``: the known plugins (cnisdk entry points, reference models) and entry checks.
- ``_chain``: chain order (CV40x).
- ``_probes``: plugin binaries and their VERSION answers (CV20x).
- ``_select``: which file of a directory a runtime uses (CV50x), from ``cnisdk._confdir``.
- ``_render``: text and JSON output.
- ``_schema``: the JSON Schema of a plugin's config, for ``cnisdk schema``.
- ``_run``: a whole run.
"""

from __future__ import annotations

from cnisdk._validate._findings import CODES, FileReport, Finding, Severity
from cnisdk._validate._run import ValidateError, validate_paths

__all__ = [
    "CODES",
    "FileReport",
    "Finding",
    "Severity",
    "ValidateError",
    "validate_paths",
]
