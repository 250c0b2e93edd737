"""cnisdk: write chained CNI plugins in Python.

The public API is what ``__all__`` lists; modules whose names start with ``_`` are private.
``cnisdk.spec`` (spec data types) and ``cnisdk.testing`` (the test kit) are public namespaces.
"""

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
    "Plugin",
    "Response",
    "Result",
    "Route",
    "__version__",
    "handle_request",
    "run",
]
