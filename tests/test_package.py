"""The package's shape: a small core at the top, the toolkit loaded on first use, old
names still reachable for one release, and no registry filled by importing a module."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

import jaxrnn

CORE = {
    "init_params",
    "init_carry",
    "cell_step",
    "unroll",
    "stack",
    "bidirectional",
    "sequence_mask",
    "dropout",
    "from_torch",
    "to_torch",
    "Cell",
    "params_class",
    "static_field",
    "Stack",
    "Bidirectional",
    "BidirectionalState",
}


def test_import_jaxrnn_loads_the_core_only():
    """``import jaxrnn`` in a fresh interpreter: about 30 names, and none of flax, optax,
    tqdm or orbax imported (they load with the submodule that uses them)."""
    code = (
        "import json, sys, jaxrnn\n"
        "heavy = [m for m in ('flax', 'optax', 'tqdm', 'orbax') if m in sys.modules]\n"
        "toolkit = [m for m in sys.modules if m.startswith('jaxrnn.') and m.split('.')[1] in"
        " ('losses', 'train', 'seq2seq', 'attention', 'parallel', 'cudnn', 'decoding')]\n"
        "print(json.dumps([len(jaxrnn.__all__), heavy, toolkit]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, heavy, toolkit = json.loads(out.stdout.strip().splitlines()[-1])
    assert 20 <= count <= 32
    assert heavy == []
    assert toolkit == []


def test_core_names_are_top_level_and_documented_in_all():
    assert set(jaxrnn.__all__) >= CORE
    for name in jaxrnn.__all__:
        assert getattr(jaxrnn, name) is not None


def test_toolkit_submodules_load_on_first_use():
    assert jaxrnn.losses.__name__ == "jaxrnn.losses"
    assert jaxrnn.methods.Sequential is jaxrnn.core.methods.Sequential
    with pytest.raises(AttributeError, match="no attribute 'not_a_module'"):
        _ = jaxrnn.not_a_module


@pytest.mark.parametrize("name", sorted(jaxrnn.MOVED))
def test_old_top_level_names_warn_and_point_to_their_new_home(name):
    with pytest.warns(DeprecationWarning, match=rf"jaxrnn\.{name} moved to jaxrnn\."):
        old = getattr(jaxrnn, name)
    module = getattr(jaxrnn, jaxrnn.MOVED[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert old is getattr(module, name)


def test_no_module_level_registry_is_filled_by_imports():
    """The dispatch of unroll reads top to bottom: the old registries are gone."""
    from jaxrnn.core import methods, unrolling

    for module in (methods, unrolling):
        for name in ("_UNROLLERS", "_METHODS", "_CLAIMS", "_WRAPPERS", "register_method"):
            assert not hasattr(module, name)
