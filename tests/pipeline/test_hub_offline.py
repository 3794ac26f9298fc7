"""LoadDataFromHub without a network: a clear error naming the dataset and HF_HUB_OFFLINE, at once."""

from __future__ import annotations

import socket
import sys
import time
import types

import pytest

from overnight import LoadDataFromHub, Pipeline
from overnight.errors import ConfigurationError


@pytest.fixture
def fake_datasets(monkeypatch):
    """A stand-in for `datasets` that records loads (the real one is an optional extra)."""
    module = types.ModuleType("datasets")
    module.calls = []  # type: ignore[attr-defined]

    def load_dataset(repo_id, **kwargs):
        module.calls.append(repo_id)  # type: ignore[attr-defined]
        return [{"instruction": "from the cache"}]

    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    return module


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_is_a_clear_error_without_a_long_wait(fake_datasets, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with Pipeline(name="hub") as pipeline:
        load = LoadDataFromHub()
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        pipeline.run(parameters={load.name: {"repo_id": "org/some-dataset", "split": "test", "batch_size": 500}})
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "'org/some-dataset'" in message and "HF_HUB_OFFLINE=1" in message and "cannot connect" in message
    assert fake_datasets.calls == []


def test_offline_mode_loads_from_the_cache(fake_datasets, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with Pipeline(name="hub-offline") as pipeline:
        LoadDataFromHub(repo_id="org/some-dataset", output_mappings={"instruction": "prompt"})
    assert pipeline.run()["prompt"] == ["from the cache"]
    assert fake_datasets.calls == ["org/some-dataset"]


def test_hub_loader_without_repo_id_says_how_to_give_it(fake_datasets):
    with Pipeline(name="hub-none") as pipeline:
        LoadDataFromHub(name="load")
    with pytest.raises(ConfigurationError, match=r"no repo_id given: pass LoadDataFromHub\(repo_id=\.\.\.\)"):
        pipeline.run()
