"""The hand-written hot paths give exactly what the general ones give.

Results are stored and read back once per request, and every prompt's tokens are
estimated at plan time, so these paths avoid cattrs and per-piece Python work; what they
read back must be what was stored, and what they produce must not differ from the
general converter's or the plain per-piece sum.
"""

from __future__ import annotations

import copy
import math
import random

import pytest

from overnight import tokens
from overnight import _json
from overnight._serialization import converter, dump_raw, dumps, load_result, loads, result_from_columns
from overnight.models import Result, ResultStatus, Usage, evolve
from overnight.store import _stored

RESULTS = [
    Result("k1", ResultStatus.SUCCEEDED, "hi", None, Usage(3, 4), "stop",
           {"b": {"z": 1, "a": [{"y": 2, "x": 1}]}, "a": None}, 1e-6, 2e-6),
    Result("k2", ResultStatus.ERRORED, error="HTTP 400: bad", raw={"custom_id": "k2", "error": {"code": "x"}}),
    Result("k3", ResultStatus.UNFINISHED, usage=Usage()),
    Result("k4", ResultStatus.SUCCEEDED, text="é \u2028 日本", cost_usd=0.0, finish_reason="length"),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: r.custom_id)
def test_a_result_stored_as_columns_reads_back_as_it_was(result: Result) -> None:
    stored = _stored(result)
    assert result_from_columns(result.custom_id, None, *stored) == result
    # Read without its raw answer (the column not read): the same result but for raw.
    without_raw = result_from_columns(result.custom_id, None, *stored[:5], None, *stored[6:])
    assert without_raw == evolve(result, raw=None)


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: r.custom_id)
def test_a_result_stored_before_schema_11_reads_back_as_the_converter_reads_it(result: Result) -> None:
    assert load_result(dumps(result)) == loads(dumps(result), Result) == result
    assert result_from_columns(result.custom_id, dumps(result), *(None,) * 10) == result


ANSWER = "A long answer, " * 40
IN_RAW = [
    {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}}]},
    {"custom_id": "k", "result": {"type": "succeeded", "message": {"content": [{"type": "text", "text": ANSWER}]}}},
    {"candidates": [{"content": {"parts": [{"text": ANSWER}], "role": "model"}}]},
]


@pytest.mark.parametrize("raw", IN_RAW, ids=["openai-style", "anthropic", "gemini"])
def test_a_text_that_the_raw_answer_holds_is_stored_once_and_read_back_whole(raw) -> None:
    given = copy.deepcopy(raw)
    result = Result("k", ResultStatus.SUCCEEDED, ANSWER, None, Usage(3, 4), "stop", raw, 1e-6, 2e-6)
    stored = _stored(result)
    assert sum(str(value).count("A long answer") for value in stored) == 40  # the text column's only
    assert raw == given  # the answer was left out of the stored JSON, not out of the result
    assert result_from_columns("k", None, *stored) == result


def test_a_text_left_out_of_a_raw_answer_that_cannot_be_stored_is_put_back() -> None:
    raw = {"choices": [{"message": {"content": "hi"}}], "odd": object()}
    with pytest.raises(TypeError):
        dump_raw(raw, "hi")
    assert raw["choices"][0]["message"]["content"] == "hi"


@pytest.mark.parametrize("raw", IN_RAW[:2], ids=["openai-style", "anthropic"])
def test_a_text_stored_inside_its_raw_answer_before_schema_11_is_read_back(raw) -> None:
    result = Result("k", ResultStatus.SUCCEEDED, ANSWER, raw=raw)
    legacy = {**converter.unstructure(result), "text": None, "text_at": IN_RAW.index(raw)}
    assert load_result(_json.dumps(legacy)) == result


@pytest.mark.parametrize("text", ["other", ANSWER[:-1], ""])
def test_a_text_the_raw_answer_does_not_hold_as_it_is_is_stored_itself(text) -> None:
    raw = {"content": [{"type": "text", "text": "A "}, {"type": "text", "text": "B"}],
           "choices": [{"message": {"content": ANSWER}}]}
    result = Result("k", ResultStatus.SUCCEEDED, text, raw=raw)
    stored = _stored(result)
    assert stored[1] == text and stored[4] is None and _json.loads(stored[5]) == raw
    assert result_from_columns("k", None, *stored) == result


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


def test_request_keys_are_those_of_the_standard_json_encoder() -> None:
    """Content addresses must not change: a new key would pay again for a stored result."""
    import hashlib
    import json

    from overnight.identity import request_key
    from overnight.models import ChatRequest, GenerationParams, Message

    def old_key(request: ChatRequest, sample: int) -> str:
        messages = json.dumps([[m.role, m.content] for m in request.messages], ensure_ascii=False,
                              separators=(",", ":"))
        params = dumps(request.params)
        text = f"openai\0{request.model}\0{messages}\0{params}\0{sample}"
        key = hashlib.sha256(text.encode()).hexdigest()[:40]
        return key if sample == 0 else f"{key}{sample:02x}"  # later samples name their index

    texts = ["plain", "quote \" back \\ slash", "ctl \x00\x01\x1f\x7f \t\n\r\b\f", "é 日本 \u2028\u2029 😀", ""]
    texts += ["".join(chr(c) for c in range(start, start + 2000) if not 0xD800 <= c <= 0xDFFF)
              for start in range(0, 0x30000, 2000)]
    for i, text in enumerate(texts):
        request = ChatRequest("", "gpt-4o-mini", [Message("system", "be brief"), Message("user", text)],
                              GenerationParams(max_tokens=5, stop=["x"]))
        assert request_key("openai", request, i % 3) == old_key(request, i % 3), text[:20]


def test_build_request_called_directly_only_when_pluggy_would_call_just_it() -> None:
    from overnight import hookimpl
    from overnight.errors import InvalidRequest
    from overnight.models import ChatRequest, Limits, Message, ProviderInfo
    from overnight.plugins import PluginRegistry

    class Plain:
        @hookimpl
        def register_providers(self):
            return [ProviderInfo(name="plain", limits=Limits(10, 1000))]

        @hookimpl
        def build_request(self, request):  # names only the request
            if not request.messages[0].content:
                raise InvalidRequest("empty", field="messages")
            return {"custom_id": request.custom_id, "n": len(request.messages)}

    class Wrapped(Plain):
        calls = 0

        @hookimpl(wrapper=True)
        def build_request(self, provider, request):  # a wrapper: pluggy must run it
            Wrapped.calls += 1
            line = yield
            return line

    request = ChatRequest("k", "m", [Message("user", "hi")])
    plain = PluginRegistry([Plain()], entrypoints=False).provider("plain")
    assert plain.build_request(request) == {"custom_id": "k", "n": 1}
    assert plain._direct["build_request"] is not None
    with pytest.raises(InvalidRequest):
        plain.build_request(ChatRequest("k", "m", [Message("user", "")]))
    wrapped = PluginRegistry([Wrapped()], entrypoints=False).provider("plain")
    with pytest.raises(Exception):  # a wrapper with nothing inside returns nothing
        wrapped.build_request(request)
    assert wrapped._direct["build_request"] is None and Wrapped.calls == 1  # through pluggy: it ran


def test_error_rows_counted_without_parsing_clean_rows_as_by_parsing(tmp_path) -> None:
    import json

    from overnight.dataset import Dataset
    from overnight.pipeline import _error_rows

    rows = [
        {"generation": "ok", "generation_error": None},  # clean, compact: not parsed
        {"generation": None, "generation_error": "HTTP 500"},
        {"text": 'he said "x_error":null', "generation_error": None},  # the words inside a string
        {"text": 'a_error":null', "g_error": "boom"},  # a value that looks like a null key
        {"g": ["a", None], "g_error": [None, "HTTP 400"]},  # samples
        {"g": ["a", "b"], "g_error": [None, None]},
        {"nested": {"x_error": "deep"}, "generation_error": None},  # only top-level columns count
        {"plain": 1},
    ]
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
                    + json.dumps({"spaced_error": "x"}) + "\n\n")  # a writer with spaces; a blank line
    expected = sum(1 for r in [*rows, {"spaced_error": "x"}] if any(
        k.endswith("_error") and (any(x is not None for x in v) if isinstance(v, list) else v is not None)
        for k, v in r.items()))
    assert expected == 4
    assert _error_rows(Dataset(path)) == expected
