"""CNI_ARGS parsing and loading (Go's types.LoadArgs)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from cnisdk import KubernetesArgs
from cnisdk.spec._args import load_cni_args, parse_cni_args


class PodArgs(BaseModel):
    K8S_POD_NAME: str = ""
    K8S_POD_NAMESPACE: str = ""
    DEBUG: bool = False


def test_pairs_split_on_first_equals_in_order() -> None:
    args = parse_cni_args("A=1;B=x=y;C=")
    assert args.pairs == [("A", "1"), ("B", "x=y"), ("C", "")]
    assert dict(args) == {"A": "1", "B": "x=y", "C": ""}


def test_empty_string_means_no_args() -> None:
    assert parse_cni_args("").pairs == []


@pytest.mark.parametrize(("raw", "bad"), [("K=V;", ""), ("novalue", "novalue"), (";A=1", "")])
def test_pair_without_equals_is_refused(raw: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f'^ARGS: invalid pair "{bad}"$'):
        parse_cni_args(raw)


def test_unknown_keys_are_refused_with_go_message() -> None:
    with pytest.raises(ValueError) as info:
        load_cni_args("K8S_POD_NAME=p;Foo=bar;X=1", PodArgs)
    assert str(info.value) == 'ARGS: unknown args ["Foo=bar" "X=1"]'


@pytest.mark.parametrize("flag", ["1", "true", "TRUE", "True"])
def test_ignore_unknown_anywhere_allows_unknown_keys(flag: str) -> None:
    loaded = load_cni_args(f"Foo=bar;K8S_POD_NAME=p;IgnoreUnknown={flag}", PodArgs)
    assert loaded.K8S_POD_NAME == "p"


def test_ignore_unknown_false_still_refuses() -> None:
    with pytest.raises(ValueError, match="unknown args"):
        load_cni_args("IgnoreUnknown=0;Foo=bar", PodArgs)


def test_bool_values_parse_like_go() -> None:
    assert load_cni_args("DEBUG=TRUE", PodArgs).DEBUG is True
    assert load_cni_args("DEBUG=0", PodArgs).DEBUG is False
    with pytest.raises(ValueError) as info:
        load_cni_args("DEBUG=yes", PodArgs)
    assert str(info.value) == (
        'ARGS: error parsing value of pair "DEBUG=yes": boolean unmarshal error: invalid input yes'
    )
    with pytest.raises(ValueError, match='"IgnoreUnknown=yes"'):
        load_cni_args("IgnoreUnknown=yes", PodArgs)


def test_keys_are_case_sensitive() -> None:
    with pytest.raises(ValueError, match='unknown args \\["k8s_pod_name=p"\\]'):
        load_cni_args("k8s_pod_name=p", PodArgs)


def test_kubernetes_args_from_containerd() -> None:
    raw = (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
        "K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=1f2e"
    )
    loaded = load_cni_args(raw, KubernetesArgs)
    assert (loaded.K8S_POD_NAMESPACE, loaded.K8S_POD_NAME) == ("default", "web-0")
    assert (loaded.K8S_POD_INFRA_CONTAINER_ID, loaded.K8S_POD_UID) == ("abc123", "1f2e")
