"""Shared fixtures: the synthetic catalogue and, where present, the real datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from salesformer.data.contract import Panel
from salesformer.data.synthetic import SyntheticCatalogue, generate_catalogue

pytest.register_assert_rewrite("bad_input_support")  # its helpers assert for the tests

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
ONLINE_RETAIL = DATASETS / "online_retail_ii" / "online_retail_ii.parquet"
STALLION = DATASETS / "stallion" / "stallion.parquet"


#: Test modules that may start a local Ray cluster (tests marked ``ray``): one unit of work
#: under pytest-xdist, so that two Ray clusters never compete for the same cores.
RAY_MODULES = "test_distributed"


def _work_unit(nodeid: str) -> str:
    """The unit a test is scheduled in: its module, or ``ray`` for the Ray modules."""
    module = nodeid.split("::", 1)[0]
    return "ray" if Path(module).name.startswith(RAY_MODULES) else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n N`` (``make test`` adds ``-n 2``): by module, with the Ray modules as one unit.

    Each module stays on one worker, so its module-scoped fixtures (fitted models) are built
    once. xdist's own ``loadgroup`` cannot do the Ray grouping: it marks groups by setting
    ``item._nodeid``, which pytest 9.2 no longer reads (the groups are silently lost).
    """
    if config.getvalue("dist") not in ("load", "loadfile"):
        return None  # an explicit other --dist (worksteal, loadscope, ...) is xdist's own
    from xdist.scheduler import LoadFileScheduling

    class RayAsOneUnit(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return RayAsOneUnit(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a Ray test outside the Ray modules: the scheduler would run it beside another."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        uses_ray = item.get_closest_marker("ray") is not None or "ray_cluster" in fixtures
        if uses_ray and _work_unit(item.nodeid) != "ray":
            raise pytest.UsageError(
                f"{item.nodeid} starts Ray but its module is not named {RAY_MODULES}*.py; "
                "move it there, so that parallel runs keep the Ray tests on one worker"
            )


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Caches (downloads, text embeddings) go to a temporary folder, never the user's."""
    before = os.environ.get("SALESFORMER_CACHE")
    os.environ["SALESFORMER_CACHE"] = str(tmp_path_factory.mktemp("salesformer-cache"))
    yield
    if before is None:
        os.environ.pop("SALESFORMER_CACHE", None)
    else:
        os.environ["SALESFORMER_CACHE"] = before


@pytest.fixture(scope="session")
def catalogue() -> SyntheticCatalogue:
    """A small seeded catalogue: 40 items, 80 weeks."""
    return generate_catalogue(n_items=40, n_weeks=80, seed=7)


@pytest.fixture(scope="session")
def small_panel(catalogue: SyntheticCatalogue) -> Panel:
    return catalogue.panel()


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide BERT with random weights and the MiniLM tokenizer, in one folder.

    Tests of text models pass this folder as ``encoder``: offline, fast, and the text signal
    does not matter to them.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from salesformer.text.encoder import bundled_minilm_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(bundled_minilm_path()))
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def online_retail_path() -> Path:
    if not ONLINE_RETAIL.is_file():
        pytest.skip(f"real dataset absent: {ONLINE_RETAIL} (shared/datasets is not here)")
    return ONLINE_RETAIL


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray of 2 CPUs for the tests of one module (marked ``ray``), shut down after it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
