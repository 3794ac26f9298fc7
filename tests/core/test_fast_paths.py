"""The hand-written hot paths give exactly what the general ones give.

Results are stored and read back once per request, and every prompt's tokens are
estimated at plan time, so these paths avoid cattrs and per-piece Python work; what they
produce must not differ from the general converter's or the plain per-piece sum.
"""

from __future__ import annotations

import math
import random

import pytest

from overnight import tokens
from overnight._serialization import dump_result, dumps, load_result, loads
from overnight.models import Result, ResultStatus, Usage

RESULTS = [
    Result("k1", ResultStatus.SUCCEEDED, "hi", None, Usage(3, 4), "stop",
           {"b": {"z": 1, "a": [{"y": 2, "x": 1}]}, "a": None}, 1e-6, 2e-6),
    Result("k2", ResultStatus.ERRORED, error="HTTP 400: bad", raw={"custom_id": "k2", "error": {"code": "x"}}),
    Result("k3", ResultStatus.UNFINISHED, usage=Usage()),
    Result("k4", ResultStatus.SUCCEEDED, text="é \u2028 日本", cost_usd=0.0, finish_reason="length"),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: r.custom_id)
def test_stored_result_text_and_value_are_the_converters(result: Result) -> None:
    assert dump_result(result) == dumps(result)
    assert load_result(dumps(result)) == loads(dumps(result), Result) == result


def _sum_by_piece(text: str) -> int:
    """The estimate as a plain loop over the pieces, nothing remembered."""
    return math.ceil(sum((tokens._piece_tokens(p) for p in tokens._PIECES.findall(text)), 0.0))


def test_remembered_piece_costs_give_the_plain_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "PIECE_CACHE", 50)  # cleared many times on the way
    monkeypatch.setattr(tokens, "_costs", tokens._PieceCosts())
    rng = random.Random(7)
    alphabet = "ab Z9_-.,!? \t\n日本語éß  12345"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        assert tokens.text_tokens(text) == _sum_by_piece(text), text
    assert len(tokens._costs) <= 50


@pytest.mark.parametrize("text, expected", [("a  b", 3), ("   ", 1), ("x  ", 2), ("a \t b", 3)])
def test_a_run_of_spaces_is_one_token(text: str, expected: int) -> None:
    # A run of two or more spaces used to raise IndexError while planning.
    assert tokens.text_tokens(text) == expected


def test_collection_thresholds_come_back_after_nested_and_failing_uses() -> None:
    import gc

    from overnight.gcthresholds import YOUNG, fewer_collections

    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with fewer_collections():
            assert gc.get_threshold()[0] == max(before[0], YOUNG)
            with fewer_collections():
                pass
            assert gc.get_threshold()[0] == max(before[0], YOUNG)  # the outer use still holds them
            raise RuntimeError
    assert gc.get_threshold() == before
