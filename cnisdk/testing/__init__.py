"""The cnisdk test kit: invoke plugins as a runtime would, in real network namespaces.

Also a pytest plugin (loaded automatically once cnisdk is installed) providing the fixtures
``netns``, ``netns_pair`` and ``cni_bin_dir``, and the ``netns`` marker.
"""

from cnisdk.testing._bin_dir import make_cni_bin_dir as make_cni_bin_dir
from cnisdk.testing._bin_dir import write_recording_plugin as write_recording_plugin
from cnisdk.testing._fakes import ExecCall as ExecCall
from cnisdk.testing._fakes import FakeExec as FakeExec
from cnisdk.testing._invoke import Invocation as Invocation
from cnisdk.testing._invoke import cni_env as cni_env
from cnisdk.testing._invoke import invoke as invoke
from cnisdk.testing._invoke import invoke_subprocess as invoke_subprocess
from cnisdk.testing._netns_fixtures import NetNSPair as NetNSPair
from cnisdk.testing._netns_fixtures import require_netns as require_netns
from cnisdk.testing._netns_fixtures import temporary_netns as temporary_netns

__all__ = [
    "ExecCall",
    "FakeExec",
    "Invocation",
    "NetNSPair",
    "cni_env",
    "invoke",
    "invoke_subprocess",
    "make_cni_bin_dir",
    "require_netns",
    "temporary_netns",
    "write_recording_plugin",
]
