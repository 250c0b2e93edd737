"""The README's first command: `cnisdk demo` runs a real chain for two pods and explains it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnisdk._commands.demo import _folded_json, sample_pod
from cnisdk.testing import require_netns

CNISDK = Path(sys.executable).parent / "cnisdk"
SIDECAR = "demo/productpage-v1-7d9f8b6c5-x2vkq"
PLAIN = "demo/postgres-0"


@pytest.mark.netns
def test_demo_redirects_the_injected_pod_skips_the_plain_one_and_cleans_up() -> None:
    require_netns()
    done = subprocess.run(
        [str(CNISDK), "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    intro, rest = out.split(f"== pod 1: {SIDECAR}, with Istio's sidecar")
    sidecar, rest = rest.split(f"== pod 2: {PLAIN}, without a sidecar")
    plain, cleanup = rest.split("== DEL and clean-up")

    # What the stand-in is, and how the plugin decides (wrapped to the terminal: unwrap).
    said = " ".join(intro.split())
    assert "There is no cluster here: a local HTTP server, http://127.0.0.1:" in said
    assert "GET /api/v1/namespaces/NAMESPACE/pods/NAME as an API server would" in said
    assert "the kubeconfig in the chain's config points istio-redirect at it" in said
    assert "sidecar.istio.io/status annotation, an istio-proxy container" in said

    # The injected pod: the facts, the plugin's own verdict, the rules, a redirected connection.
    assert 'sidecar.istio.io/status: {"initContainers": ["istio-validation"], ' in sidecar
    assert "containers: productpage, istio-proxy (args: proxy sidecar ...)" in sidecar
    assert f"[kube-api stand-in] GET /api/v1/namespaces/demo/pods/{SIDECAR[5:]}" in sidecar
    assert "[plugin log] " in sidecar
    assert f"pod {SIDECAR}: redirection installed (REDIRECT, IPv4)" in sidecar
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in sidecar
    assert "accepted by the listener on :15001, original destination" in sidecar
    assert "CHECK: ok" in sidecar

    # The plain pod: same chain, looked up, skipped by the plugin, no rules in its namespace.
    assert "sidecar.istio.io/status: (none: the injector did not run)" in plain
    assert "containers: postgres\n" in plain
    assert f"[kube-api stand-in] GET /api/v1/namespaces/demo/pods/{PLAIN[5:]}" in plain
    assert f"pod {PLAIN}: pod has no istio-proxy container (containers: postgres), skip" in plain
    assert re.search(r"result: eth0 10\.\d+\.7\.3/24 via 10\.\d+\.7\.1", plain)
    assert "ISTIO_" not in plain
    assert "rules in the pod's namespace: no ISTIO chain (iptables-save" in plain

    assert "deleted both attachments, the bridge and the namespaces" in cleanup
    assert "demo finished" in cleanup
    # Other runs may add and remove namespaces meanwhile: look for this run's own only.
    bridge = re.search(r'"bridge": "(cnidemo([0-9a-f]{6}))"', intro)
    work = re.search(r'"dataDir": "(/\S+)/ipam"', intro)
    assert bridge is not None and work is not None
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"cnisdk-demo-{bridge.group(2)}-" not in namespaces
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f" {bridge.group(1)}:" not in links
    assert not Path(work.group(1)).exists()


def test_the_chain_is_printed_folded_but_the_same_json() -> None:
    doc = {"plugins": [{"type": "bridge", "ipam": {"ranges": [[{"subnet": "10.1.2.0/24"}]]}}]}
    folded = _folded_json({"pod": sample_pod(), **doc}, width=40)
    assert json.loads(folded) == {"pod": sample_pod(), **doc}
    assert '\n      "name": "productpage-v1-7d9f8b6c5-x2vkq",\n' in folded  # a key a line
    assert _folded_json(doc) == json.dumps(doc)  # short enough: one line
