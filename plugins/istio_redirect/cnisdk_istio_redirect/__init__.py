"""istio-redirect: Istio's sidecar traffic redirection as a cnisdk CNI plugin.

Registered as entry point ``istio-redirect`` in group ``cnisdk.plugins``.
"""

from cnisdk_istio_redirect._config import IstioRedirectConfig as IstioRedirectConfig
from cnisdk_istio_redirect._plugin import IstioRedirect as IstioRedirect
from cnisdk_istio_redirect._redirect import RedirectSpec as RedirectSpec

__all__ = ["IstioRedirect", "IstioRedirectConfig", "RedirectSpec"]
