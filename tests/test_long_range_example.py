"""``examples/long_range.py`` runs end to end at tiny sizes: it skips the models whose cells
jaxrnn lacks, matches the parameter counts, and writes its plot, JSON and Markdown table.
The results it reports at full size are in ``docs/long-range.md``; nothing trains there."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

from jaxrnn.cells import CELL_INITS

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "long_range.py"


@pytest.fixture(scope="module")
def long_range():
    spec = importlib.util.spec_from_file_location("long_range", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["long_range"] = module
    spec.loader.exec_module(module)
    return module


def test_batches_ask_for_the_stored_values(long_range):
    task = long_range.Task(num_keys=6, num_values=5, num_pairs=3, seq_len=8)
    rng = long_range.np.random.default_rng(0)
    keys, values, answers = long_range.make_batch(rng, 4, task)
    assert keys.shape == values.shape == (8, 4) and answers.shape == (3, 4)
    assert (keys[3:5] == 6).all() and (values[3:] == 5).all()  # the gap and queries: blanks
    for b in range(4):
        stored = dict(zip(keys[:3, b], values[:3, b], strict=True))
        assert len(stored) == 3  # distinct keys
        assert [stored[k] for k in keys[5:, b]] == list(answers[:, b])


def test_every_model_gets_the_same_number_of_parameters(long_range):
    """At the default sizes, within 5%: shapes only, nothing is allocated or trained."""
    task = long_range.Task(num_keys=64, num_values=64, num_pairs=8, seq_len=64)
    models = [
        n for n, layers in long_range.MODELS.items() if all(c in CELL_INITS for c, _ in layers)
    ]
    assert {"lstm", "gru", "mingru", "rglru"} <= set(models)
    for name in models:
        hidden_size, count = long_range.matched_hidden_size(
            name, 20_000, task, embed_size=32, num_layers=1
        )
        assert abs(count - 20_000) <= 1_000, (name, hidden_size, count)


def test_main_runs_skips_what_is_missing_and_writes_its_outputs(long_range, monkeypatch, tmp_path):
    # A model whose cell no jaxrnn has: listed, then skipped.
    monkeypatch.setitem(long_range.MODELS, "absent", [("no_such_cell", {})])
    lines = []
    target = 1500
    results = long_range.main(
        cells=["absent", "mingru"],  # one model: compiling is most of the time
        num_params=target,
        num_pairs=2,
        seq_len=6,
        num_keys=6,
        num_values=6,
        embed_size=8,
        num_steps=3,
        batch_size=4,
        eval_every=2,
        num_test=8,
        seeds=(0, 1),
        plot_path=str(tmp_path / "curves.png"),
        results_path=str(tmp_path / "results.json"),
        log=lines.append,
    )
    assert results["skipped"] == ["absent"]
    assert any("skipped" in line and "absent" in line for line in lines)
    assert list(results["models"]) == ["mingru"]
    for name, model in results["models"].items():
        assert abs(model["num_params"] - target) <= 0.05 * target, name
        assert len(model["test_accuracy"]) == 2  # one per seed
        for curves in model["curves"]:
            assert curves["step"] == [2, 3]
            assert all(0.0 <= a <= 1.0 for a in curves["test_accuracy"])
            assert len(curves["train_loss"]) == 3
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "results.json").read_text())["skipped"] == ["absent"]
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("| model |") and "| mingru |" in table
