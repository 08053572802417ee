"""Loading PyTorch state_dict files without torch: the file reader and from_state_dict."""

import importlib.util
import pathlib
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.interop.torch import from_state_dict, load_torch_state_dict

torch = pytest.importorskip("torch")

MODULES = {
    "lstm-2-layer-bidirectional": lambda: torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True),
    "lstm-proj": lambda: torch.nn.LSTM(3, 5, proj_size=2),
    "gru-no-bias": lambda: torch.nn.GRU(3, 4, bias=False),
    "rnn-relu": lambda: torch.nn.RNN(3, 4, nonlinearity="relu", num_layers=3),
    "lstm-cell": lambda: torch.nn.LSTMCell(3, 4),
    "gru-cell": lambda: torch.nn.GRUCell(3, 4),
    "rnn-cell": lambda: torch.nn.RNNCell(3, 4),
}


def _same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", MODULES)
def test_file_round_trip_matches_from_torch(name, tmp_path):
    torch.manual_seed(0)
    module = MODULES[name]()
    path = tmp_path / "model.pt"
    torch.save(module.state_dict(), path)
    state_dict = load_torch_state_dict(path)
    expected = {k: v.numpy() for k, v in module.state_dict().items()}
    assert list(state_dict) == list(expected)
    for key, value in expected.items():
        assert state_dict[key].dtype == value.dtype
        np.testing.assert_array_equal(state_dict[key], value)
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    params = from_state_dict(state_dict, nonlinearity=nonlinearity)
    _same_tree(params, jaxrnn.from_torch(module))


def test_outputs_match_torch_after_loading(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    torch.save(module.state_dict(), tmp_path / "gru.pt")
    params = from_state_dict(load_torch_state_dict(tmp_path / "gru.pt"))
    xs = np.random.default_rng(0).normal(size=(6, 2, 3)).astype(np.float32)
    expected, _ = module(torch.from_numpy(xs))
    _, ys = jaxrnn.unroll(params, None, jnp.asarray(xs))
    np.testing.assert_allclose(ys, expected.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16", "int64", "bool"])
def test_dtypes_views_and_strides(dtype, tmp_path):
    base = torch.arange(24).reshape(4, 6).to(getattr(torch, dtype))
    # Views share one storage: the file stores it once, with offsets and strides.
    tensors = {"base": base, "transposed": base.T, "rows": base[1:3], "cols": base[:, 2::2]}
    torch.save(tensors, tmp_path / "views.pt")
    loaded = load_torch_state_dict(tmp_path / "views.pt")
    for key, tensor in tensors.items():
        expected = tensor.float().numpy() if dtype == "bfloat16" else tensor.numpy()
        assert loaded[key].shape == tuple(tensor.shape)
        np.testing.assert_array_equal(loaded[key].astype(expected.dtype), expected)
    assert loaded["base"].dtype.name == dtype


def test_bfloat16_modules_and_tensors_load_as_bfloat16():
    """NumPy has no bfloat16, so torch's ``.numpy()`` refuses it: the weights come through
    ml_dtypes' bfloat16, exactly, from a module and from its state_dict's tensors."""
    torch.manual_seed(0)
    module = torch.nn.GRU(3, 4, num_layers=2).to(torch.bfloat16)
    for params in (jaxrnn.from_torch(module), from_state_dict(module.state_dict())):
        assert {leaf.dtype.name for leaf in jax.tree.leaves(params)} == {"bfloat16"}
        for name, array in jaxrnn.to_torch(params).items():
            expected = module.state_dict()[name].float().numpy()
            np.testing.assert_array_equal(np.asarray(array, np.float32), expected)


def test_prefix_picks_the_rnn_out_of_a_model(tmp_path):
    model = torch.nn.ModuleDict({"rnn": torch.nn.LSTM(3, 4), "head": torch.nn.Linear(4, 2)})
    torch.save(model.state_dict(), tmp_path / "model.pt")
    state_dict = load_torch_state_dict(tmp_path / "model.pt")
    params = from_state_dict(state_dict, prefix="rnn.", cell="lstm")
    _same_tree(params, jaxrnn.from_torch(model["rnn"]))
    with pytest.raises(ValueError, match=r"hold only RNN weights .* got head\.bias, head\.weight"):
        from_state_dict(state_dict)


def test_loading_does_not_need_torch(tmp_path):
    torch.save(torch.nn.LSTM(3, 4).state_dict(), tmp_path / "lstm.pt")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from jaxrnn.interop.torch import from_state_dict, load_torch_state_dict\n"
        f"params = from_state_dict(load_torch_state_dict({str(tmp_path / 'lstm.pt')!r}))\n"
        "print(type(params.layers[0]).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "LSTMParams"


def test_file_errors(tmp_path):
    torch.save(
        torch.nn.GRU(3, 4).state_dict(),
        tmp_path / "legacy.pt",
        _use_new_zipfile_serialization=False,
    )
    with pytest.raises(ValueError, match="load_torch_state_dict: path must be a zip archive"):
        load_torch_state_dict(tmp_path / "legacy.pt")
    torch.save(torch.nn.GRU(3, 4), tmp_path / "module.pt")  # a pickled module, not a dict
    with pytest.raises(
        pickle.UnpicklingError,
        match=r"state_dict of plain tensors; got a reference to torch\.nn\.modules\.rnn\.GRU",
    ):
        load_torch_state_dict(tmp_path / "module.pt")


@pytest.mark.parametrize(
    ("state_dict", "options", "error", "match"),
    [
        ({"weight_ih_l0": np.zeros((16, 3))}, {}, KeyError, "contain weight_hh_l0"),
        (
            {"weight_ih_l0": np.zeros((12, 3)), "weight_hh_l0": np.zeros((12, 4))},
            {"cell": "lstm"},
            ValueError,
            r"cell must match the weights' shapes \('gru'\); got 'lstm'",
        ),
        (
            {"weight_ih": np.zeros((8, 3)), "weight_hh": np.zeros((8, 4))},
            {},
            ValueError,
            "weight_hh must have shape",
        ),
        (
            {"weight_ih": np.zeros((4, 3)), "weight_hh": np.zeros((4, 4))},
            {"nonlinearity": "gelu"},
            ValueError,
            "nonlinearity must be one of 'tanh', 'relu'; got 'gelu'",
        ),
        ([1, 2], {}, TypeError, "state_dict must be a mapping"),
        (
            {
                "weight_ih_l0": np.zeros((16, 3)),
                "weight_hh_l0": np.zeros((16, 4)),
                "bias_ih_l0": np.zeros(16),
            },
            {},
            ValueError,
            r"must contain both bias_ih_l0 and bias_hh_l0 or neither; got only bias_ih_l0$",
        ),
        (
            {"weight_ih": np.zeros((4, 3)), "weight_hh_l0": np.zeros((4, 4))},
            {},
            ValueError,
            r"use either layered names \(weight_ih_l0\) or cell names",
        ),
    ],
)
def test_from_state_dict_errors(state_dict, options, error, match):
    with pytest.raises(error, match=match):
        from_state_dict(state_dict, **options)


def test_porting_example_runs(capsys):
    # examples/port_from_pytorch.py trains torch, saves, loads without torch, compares.
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "port_from_pytorch.py"
    spec = importlib.util.spec_from_file_location("port_from_pytorch", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(steps=2)  # asserts that the logits match
    assert "max |jaxrnn - torch| over the logits" in capsys.readouterr().out
