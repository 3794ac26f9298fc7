"""Bad input costs nothing; secrets stay out.

The table: each bad input, for each provider, is one ``overnight run`` that must exit 1
with overnight's own error (no traceback) naming the row and the field where there is
one, while the sandbox receives ZERO HTTP requests (its counters, every provider).

Where the suite found a case that fails today, the case is marked xfail (strict) with
the file and the reason: the table shows it instead of hiding it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from harness import PROVIDERS, RunResult, prompt

ROWS = 6
BAD = 4  # the row the row-level cases break


@attrs.frozen
class Bad:
    name: str
    needles: tuple[str, ...]
    rows: Any = None  # a function(rows) -> rows
    lane: dict[str, Any] = attrs.field(factory=dict)
    known: dict[str, str] = attrs.field(factory=dict)  # provider (or "*") -> why it fails today


def at_bad_row(change):
    def rows(rows):
        rows[BAD] = change(dict(rows[BAD]))
        return rows

    return rows


def without(column):
    def change(row):
        row.pop(column)
        row["question"] = "where did the instruction go?"
        return row

    return change


def setting(column, value):
    def change(row):
        row[column] = value
        return row

    return change


CASES = [
    Bad("missing column", (f"row {BAD}", "field 'instruction'", "missing column"), rows=at_bad_row(without("instruction"))),
    Bad("empty prompt", (f"row {BAD}", "field 'instruction'", "empty prompt"), rows=at_bad_row(setting("instruction", ""))),
    Bad("blank prompt", (f"row {BAD}", "field 'instruction'", "empty prompt"),
        rows=at_bad_row(setting("instruction", " \n\t "))),
    Bad("null prompt", (f"row {BAD}", "field 'instruction'", "is null"), rows=at_bad_row(setting("instruction", None))),
    Bad("number prompt", (f"row {BAD}", "field 'instruction'", "must be a string, got int"),
        rows=at_bad_row(setting("instruction", 42))),
    Bad("list prompt", (f"row {BAD}", "field 'instruction'", "must be a string, got list"),
        rows=at_bad_row(setting("instruction", ["a", "b"]))),
    Bad("text not encodable as UTF-8", (f"row {BAD}", "field 'instruction'"),
        rows=at_bad_row(setting("instruction", "lone surrogate \ud800 here"))),
    Bad("template field missing", ("row 0", "field 'topic'", "missing column"), lane={"task": {"template": "About {topic}"}}),
    Bad("not a JSON line", ("not valid JSON",), rows=lambda rows: rows[:BAD] + ["{not json"] + rows[BAD + 1:]),
    Bad("line over the per-request size", (f"row {BAD}", "field 'instruction'", "over the", "limit of 20,000 bytes per request"),
        rows=at_bad_row(setting("instruction", "long " * 6_000)), lane={"max_bytes": 20_000}),
    Bad("generations: zero", ("num_generations",), lane={"task": {"num_generations": 0}}),
    Bad("generations: not a number", ("num_generations",), lane={"task": {"num_generations": "3"}}),
    Bad("generations: n option", ("field 'n'", "unknown generation option"), lane={"generation_kwargs": {"n": 4}}),
    Bad("unknown generation option", ("field 'temperatur'", "unknown generation option"),
        lane={"generation_kwargs": {"temperatur": 0.5}}),
    Bad("unknown client option", ("api_kye",), lane={"client_options": {"api_kye": "oops"}}),
    Bad("malformed client option", ("timeout",), lane={"client_options": {"timeout": -1}}),
    Bad("max_tokens not a number", ("max_tokens",), lane={"generation_kwargs": {"max_tokens": "lots"}}),
    Bad("max_tokens below 1", ("max_tokens",), lane={"generation_kwargs": {"max_tokens": -1}}),
    Bad("temperature not a number", ("temperature",), lane={"generation_kwargs": {"temperature": "hot"}}),
    Bad("top_p out of range", ("top_p",), lane={"generation_kwargs": {"top_p": 2}}),
    Bad("seed not a number", ("seed",), lane={"generation_kwargs": {"seed": "x"}}),
    Bad("stop not strings", ("stop",), lane={"generation_kwargs": {"stop": 5}}),
    Bad("response_format not a dict", ("response_format",), lane={"generation_kwargs": {"response_format": "json"}}),
    # A user column named like one of TextGeneration's outputs would be overwritten.
    *(
        Bad(f"input column named like the output {column!r}",
            (f"row {BAD}", f"field {column!r}", "would be overwritten", way_out),
            rows=at_bad_row(setting(column, "mine")))
        for column, way_out in [
            ("generation", "output_column="), ("generation_error", "output_column="),
            ("generation_usage", "output_column="), ("generation_finish_reason", "output_column="),
            ("model_name", "rename or drop"),
        ]
    ),
    Bad("input column named like a custom output_column", ("row 0", "field 'answer'", "would be overwritten"),
        rows=lambda rows: [{**r, "answer": "mine"} for r in rows], lane={"task": {"output_column": "answer"}}),
]


def cases():
    for bad in CASES:
        for provider in PROVIDERS:
            reason = bad.known.get(provider) or bad.known.get("*")
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(bad, provider, id=f"{bad.name}-{provider}", marks=marks)


def assert_nothing_reached_the_sandbox(lane) -> None:
    counters = lane.control.counters()
    for provider, seen in counters.items():
        assert (seen["files"], seen["jobs"], seen["requests"], seen["http"]) == (0, 0, 0, {}), (provider, seen)


def write_rows(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


@pytest.mark.parametrize("bad, provider", list(cases()))
def test_bad_input_is_a_clear_error_naming_row_and_field_and_costs_nothing(make_lane, bad, provider):
    lane = make_lane(provider, rows=ROWS, **bad.lane)
    if bad.rows is not None:
        rows = [{"id": i, "instruction": prompt(i)} for i in range(ROWS)]
        write_rows(lane.input, bad.rows(rows))
    result = lane.run()
    assert_nothing_reached_the_sandbox(lane)
    result.assert_clear_error(*bad.needles)
    assert not lane.output.exists()


def test_an_unknown_provider_names_the_installed_ones_and_costs_nothing(make_lane):
    lane = make_lane("nosuchai", rows=ROWS)
    result = lane.run()
    result.assert_clear_error("'nosuchai'",
                              "installed providers: anthropic, deepinfra, gemini, groq, mistral, nebius, openai, together",
                              "Check the spelling")
    assert "pip install overnight-nosuchai" not in result.stderr
    assert_nothing_reached_the_sandbox(lane)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_missing_key_costs_nothing(make_lane, provider):
    from harness import KEY_ENV

    lane = make_lane(provider, rows=ROWS)
    lane.run(**{KEY_ENV[provider]: ""}).assert_clear_error(KEY_ENV[provider])
    assert_nothing_reached_the_sandbox(lane)


def test_an_absurd_number_of_generations_is_refused_before_planning(make_lane):
    lane = make_lane("openai", rows=ROWS, task={"num_generations": 10**6})
    result = lane.start().wait(timeout=2.0)  # planning 6 million requests takes minutes
    assert_nothing_reached_the_sandbox(lane)
    result.assert_clear_error("num_generations")


# --- secrets ------------------------------------------------------------------------------------

#: Each SDK's own debug switch: logs must stay free of the key even then.
SDK_DEBUG = {"openai": {"OPENAI_LOG": "debug"}, "anthropic": {"ANTHROPIC_LOG": "debug"},
             "mistral": {"MISTRAL_DEBUG": "1"}, "gemini": {}}  # google-genai logs through `logging` only


def files_containing(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_api_key_from_the_environment_appears_nowhere(make_lane, sandbox, provider):
    """The key (only ever given as ``<PROVIDER>_API_KEY``) is looked for, after a life of
    crashes, errors and retries, in: the store directory (SQLite file, WAL, step
    outputs), every run's stdout and stderr (progress, logs, error messages), the job
    metadata the sandbox holds, and every file of the sandbox's state."""
    from harness import RESULT_FILES

    lane = make_lane(provider, client_options={"max_retries": 0, **RESULT_FILES.get(provider, {})},
                     extra_env=SDK_DEBUG[provider])
    lane.fault(error_rate=0.2, times=1)
    assert lane.run(fault="after_create").killed
    lane.advance()
    lane.run(expect=75)  # found by tag, collected; the failed rows go into a retry job
    lane.fault(http_status=500)  # an error message from the SDK, through overnight
    lane.run().assert_clear_error()
    lane.control.clear_faults()
    lane.advance()
    lane.fault(download_truncate=0.5, times=1)
    lane.run().assert_clear_error()  # a cut download
    lane.run_until_done()
    lane.assert_complete(allow_errors=True)

    for argv in (("status",), ("status", "--json"), ("jobs", "--all"), ("jobs", "--all", "--json")):
        assert lane.cli(*argv).status == 0  # what an operator prints is checked below too

    secret = lane.key.encode()
    assert files_containing(lane.home, secret) == []
    assert files_containing(lane.root, secret) == []  # run logs, output, input
    assert lane.key not in lane.logs()
    assert lane.key not in json.dumps(lane.control.jobs())
    assert files_containing(Path(sandbox.state_dir), secret) == []
    assert any("error" in r.stderr for r in lane.history)  # error messages were among the logs checked
    assert isinstance(lane.history[0], RunResult)
