"""Put cnisdk plugins on a node, keep them there, and take them off again.

This is what Istio's ``install-cni`` (``cni/pkg/install``) does for ``istio-cni``, for any
cnisdk plugin type, in the same parts:

- :mod:`~cnisdk._install.binaries`: launchers in the CNI bin dir, and the self-contained
  Python copied onto the node for them;
- :mod:`~cnisdk._install.cniconfig`: editing a config's bytes (our entries in and out,
  every other byte kept; why splicing rather than re-marshalling is explained there);
- :mod:`~cnisdk._install.chain`: those edits applied to the file a runtime uses, under the
  conf dir lock, without losing another writer's update, and undone on uninstall;
- :mod:`~cnisdk._install.record`: what install added, so uninstall takes out only that;
- :mod:`~cnisdk._install.kubeconfig`: the plugin's kubeconfig, from a service account;
- :mod:`~cnisdk._install.install`: install and uninstall in order, and what is out of place;
- :mod:`~cnisdk._install.watch`: ``--watch``, readiness (served by :mod:`cnisdk._health`).
"""

from cnisdk._install.binaries import install_runtime
from cnisdk._install.chain import LOCK_NAME
from cnisdk._install.cniconfig import DEFAULT_CNI_VERSION
from cnisdk._install.install import Drift, install, out_of_place, uninstall
from cnisdk._install.kubeconfig import kubeconfig_document
from cnisdk._install.record import RECORD_NAME, InstallRecord
from cnisdk._install.spec import InstallError, InstallSpec, NoPrimaryConfig, Outcome
from cnisdk._install.watch import Readiness, watch

__all__ = [
    "DEFAULT_CNI_VERSION",
    "LOCK_NAME",
    "RECORD_NAME",
    "Drift",
    "InstallError",
    "InstallRecord",
    "InstallSpec",
    "NoPrimaryConfig",
    "Outcome",
    "Readiness",
    "install",
    "install_runtime",
    "kubeconfig_document",
    "out_of_place",
    "uninstall",
    "watch",
]
