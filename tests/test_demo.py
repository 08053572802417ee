"""The demo trains a character LSTM on the stdlib help text and generates from it."""

import pytest

from jaxrnn import demo

TINY = ["--steps", "25", "--hidden-size", "32", "--embed-size", "16", "--batch-size", "8"]
TINY += ["--seq-len", "16", "--generate-length", "40", "--num-layers", "2"]


def test_demo_learns_and_generates(capsys):
    result = demo.main([*TINY, "--seed", "3", "--prompt", "def "])
    vocab = set(demo.load_corpus())
    # Untrained, the loss is near log2(vocabulary size) bits; 25 steps learn at least the
    # character frequencies, which is well over a bit per character better.
    assert result.initial_bits > 6
    assert result.final_bits < result.initial_bits - 1
    assert result.text.startswith("def ")
    assert len(result.text) == len("def ") + 40
    assert set(result.text) <= vocab
    assert result.text in capsys.readouterr().out


def test_demo_rejects_a_prompt_with_unseen_characters():
    with pytest.raises(SystemExit, match="do not occur in the corpus"):
        demo.main([*TINY, "--prompt", "\x00"])


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--hidden-size", "-3", "--hidden-size must be a positive int"),
        ("--seq-len", "0", "--seq-len must be a positive int"),
        ("--learning-rate", "0", "--learning-rate must be positive"),
        ("--steps", "-1", "--steps must be >= 0"),
    ],
)
def test_demo_refuses_sizes_that_cannot_train(flag, value, message, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args([flag, value])
    assert message in capsys.readouterr().err
