"""cnisdk: write chained CNI plugins in Python.

The public API is what ``__all__`` lists; modules whose names start with ``_`` are private.
``cnisdk.spec`` (spec data types) and ``cnisdk.testing`` (the test kit) are public namespaces.
"""

import typing as _typing

from cnisdk._plugin import Attachment as Attachment
from cnisdk._plugin import Context as Context
from cnisdk._plugin import Plugin as Plugin
from cnisdk._skel import Response as Response
from cnisdk._skel import handle_request as handle_request
from cnisdk._skel import run as run
from cnisdk._version import __version__ as __version__
from cnisdk.spec._args import KubernetesArgs as KubernetesArgs
from cnisdk.spec._config import NetConf as NetConf
from cnisdk.spec._config import NetConfList as NetConfList
from cnisdk.spec._errors import CNIError as CNIError
from cnisdk.spec._errors import ErrorCode as ErrorCode
from cnisdk.spec._result import DNS as DNS
from cnisdk.spec._result import Interface as Interface
from cnisdk.spec._result import IPConfig as IPConfig
from cnisdk.spec._result import Result as Result
from cnisdk.spec._result import Route as Route

if _typing.TYPE_CHECKING:
    from cnisdk._invoke import PluginExec as PluginExec
    from cnisdk._netns import NetNS as NetNS

__all__ = [
    "DNS",
    "Attachment",
    "CNIError",
    "Context",
    "ErrorCode",
    "IPConfig",
    "Interface",
    "KubernetesArgs",
    "NetConf",
    "NetConfList",
    "NetNS",
    "Plugin",
    "PluginExec",
    "Response",
    "Result",
    "Route",
    "__version__",
    "handle_request",
    "run",
]


def __getattr__(name: str) -> _typing.Any:
    # NetNS is what ``Context.netns`` returns, PluginExec what ``handle_request(exec=)`` takes;
    # their modules load only when a plugin (or a test) uses them.
    if name == "NetNS":
        from cnisdk._netns import NetNS

        return NetNS
    if name == "PluginExec":
        from cnisdk._invoke import PluginExec

        return PluginExec
    raise AttributeError(f"module 'cnisdk' has no attribute {name!r}")
