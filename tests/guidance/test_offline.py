"""Offline and typos (issue 22): an unreachable hub fails within 5 s with the clear message instead of spending
70-90 s in huggingface_hub's retries; a name close to a built-in model is a typo, not a hub id."""

from __future__ import annotations

import socket
import time

import pytest

from pgc_fast.guidance import GuidanceLoadError, load_models
from pgc_fast.guidance.models import loading


@pytest.fixture()
def no_hub(monkeypatch, tmp_path):
    """Online mode, no proxy, the hub at a port nothing listens on, an empty cache; any real hub call fails."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(loading, "_PROBES", {})

    def forbidden(*a, **k):
        raise AssertionError("the hub must not be asked once it is known to be unreachable")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "list_repo_files", forbidden)
    return tmp_path


def test_unreachable_hub_fails_fast_with_the_clear_message(no_hub):
    t0 = time.perf_counter()
    with pytest.raises(GuidanceLoadError) as e:
        load_models("some-org/some-model", vae="other-org/vae", controlnets=("depth",), cache_dir=str(no_hub))
    took = time.perf_counter() - t0
    msg = str(e.value)
    assert took < 5.0, took
    assert "Hugging Face hub is unreachable" in msg and "127.0.0.1:9" in msg
    for repo in ("some-org/some-model", "other-org/vae", "hf download some-org/some-model"):
        assert repo in msg


def test_a_hanging_name_lookup_is_bounded_too(no_hub, monkeypatch):
    def hang(*a, **k):
        time.sleep(30)

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    with pytest.raises(GuidanceLoadError, match="within 3 s"):
        load_models("some-org/some-model", cache_dir=str(no_hub))
    assert time.perf_counter() - t0 < 5.0


def test_builtin_typo_gets_did_you_mean_not_a_download(no_hub):
    with pytest.raises(GuidanceLoadError, match=r"did you mean 'tiny-sdxl'\?"):
        load_models("tiny-sdxxl", cache_dir=str(no_hub))
    with pytest.raises(GuidanceLoadError, match="not a built-in model"):
        load_models("zzzz", cache_dir=str(no_hub))
