"""num_generations=2 gives two distinct answers on every provider, each the sandbox's
answer for its own sample (issue 14: a user must see that two requests were answered)."""

from __future__ import annotations

import pytest

from overnight.identity import request_key
from overnight.models import ChatRequest, Message
from overnight.sandbox import expected_reply
from overnight.sandbox.responder import sample_variant

from structured_lanes import PROVIDERS, lane, pipeline, run_to_end, sandbox  # noqa: F401 (fixtures)


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_two_samples_are_two_distinct_answers(lane, provider):
    sb = lane(provider)
    rows = [{"instruction": f"{provider} sample question {i}"} for i in range(3)]
    out = run_to_end(sb, lambda: pipeline(provider, f"samples-{provider}", rows, num_generations=2)).to_list()
    for row, got in zip(rows, out):
        first, second = got["generation"]
        assert first != second, got
        assert [first, second] == [expected_reply(row["instruction"], variant=s) for s in range(2)]
        assert got["generation_error"] == [None, None]
    # The answers of a re-run are the same ones: the variant is the sample's, not the job's.
    assert run_to_end_again(sb, provider, rows) == [r["generation"] for r in out]


def run_to_end_again(sb, provider, rows):
    return [r["generation"] for r in pipeline(provider, f"samples-{provider}", rows, num_generations=2).run()]


def test_the_request_key_carries_the_sample_and_first_samples_keep_their_keys():
    request = ChatRequest("", "m", [Message("user", "q")])
    first, second, last = (request_key("openai", request, s) for s in (0, 1, 127))
    assert len(first) == 40 and len(second) == 42 and second.endswith("01") and last.endswith("7f")
    assert [sample_variant(k) for k in (first, second, last)] == [0, 1, 127]
    # overnight-anthropic's tagged wire ids carry the same key: the sandbox reads it there too.
    from overnight_anthropic import wire_ids

    assert [sample_variant(wire_ids.encode("tag", k)) for k in (first, second, last)] == [0, 1, 127]
    assert sample_variant("request-1") == 0  # a third-party client's id: the first sample


def test_the_reply_of_a_later_sample_says_which_it_is():
    assert expected_reply("q") == expected_reply("q", variant=0)
    assert expected_reply("q", variant=3).endswith(", sample 3)")
