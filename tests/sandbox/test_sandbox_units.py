"""Pure pieces: lifecycle arithmetic, the clock, the responder, fault merging."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import openai
import pytest

from overnight.sandbox import Durations, Sandbox, expected_reply
from overnight.sandbox.clock import Clock
from overnight.sandbox.faults import Fault, JobFaults
from overnight.sandbox.lifecycle import Schedule, snapshot
from overnight.sandbox.responder import embedding, generate, conversation
from sandbox_helpers import prompts, read_jsonl, upload_openai_batch


def schedule(**kw: object) -> Schedule:
    base = dict(created_at=0.0, validated_at=10.0, processing=100.0, finalizing=10.0, cancelling=5.0,
                deadline=86400.0, total=10)
    base.update(kw)
    return Schedule(**base)  # type: ignore[arg-type]


def test_lifecycle_phases() -> None:
    s = schedule()
    assert snapshot(s, 0).phase == "validating"
    assert (snapshot(s, 10).phase, snapshot(s, 10).processed) == ("in_progress", 0)
    assert snapshot(s, 59.9).processed == 4
    assert (snapshot(s, 110).phase, snapshot(s, 110).finalizing_at) == ("finalizing", 110)
    end = snapshot(s, 120)
    assert (end.phase, end.ended_at, end.processed, end.in_progress_at) == ("completed", 120, 10, 10)


def test_lifecycle_cancel_expire_fail() -> None:
    cancelled = schedule(cancel_requested_at=40.0)
    assert snapshot(cancelled, 41).phase == "cancelling"
    assert (snapshot(cancelled, 45).phase, snapshot(cancelled, 45).processed) == ("cancelled", 3)
    during_finalizing = schedule(cancel_requested_at=115.0)
    assert (snapshot(during_finalizing, 200).phase, snapshot(during_finalizing, 200).processed) == ("cancelled", 10)
    early = snapshot(schedule(cancel_requested_at=5.0), 100)
    assert (early.phase, early.in_progress_at) == ("cancelled", None)
    expired = snapshot(schedule(expire_fraction=0.35), 1000)
    assert (expired.phase, expired.processed, expired.ended_at) == ("expired", 3, 45)
    stuck = schedule(stuck=True, deadline=500.0)
    assert snapshot(stuck, 499).phase == "in_progress" and snapshot(stuck, 500).phase == "expired"
    failed = snapshot(schedule(valid=False), 10)
    assert (failed.phase, failed.in_progress_at) == ("failed", None)
    provider = snapshot(schedule(cancel_fraction=0.5), 1000)
    assert (provider.phase, provider.processed, provider.cancelling_at) == ("cancelled", 5, 60)


def test_clock_manual_and_speed() -> None:
    manual = Clock(start=100.0)
    assert manual.now() == 100.0 and manual.advance(5) == 105.0 and manual.speed is None
    with pytest.raises(ValueError):
        manual.advance(-1)
    ticks = iter([0.0, 2.0, 2.0, 2.0, 3.0])
    fast = Clock(start=0.0, speed=60, monotonic=lambda: next(ticks))
    assert fast.now() == 120.0  # 2 wall seconds
    assert fast.advance(10) == 130.0
    assert fast.now() == 190.0


def test_expected_reply_normalises_content_forms() -> None:
    plain = expected_reply([{"role": "user", "content": "hello"}])
    parts = expected_reply([{"role": "user", "content": [{"type": "text", "text": "hello"}]}])
    assert plain == parts and plain.startswith("Sandbox answer to: hello (ref ")
    assert expected_reply([{"role": "user", "content": "hello"}], system="s") != plain
    assert expected_reply("hello") == plain
    assert expected_reply([{"role": "user", "content": "a b c"}], max_tokens=2) == "Sandbox answer"
    assert expected_reply([{"role": "user", "content": "x"}], stop="answer") == "Sandbox "
    schema = {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}}, "ok": {"type": "boolean"},
        "kind": {"enum": ["a", "b"]}, "n": {"type": ["null", "number"]}}}}}
    value = json.loads(expected_reply([{"role": "user", "content": "q"}], response_format=schema))
    assert value["ok"] is True and value["kind"] == "a" and isinstance(value["n"], float)
    assert "q" in value["tags"][0]


def test_generation_usage_and_embeddings() -> None:
    g = generate(conversation([{"role": "user", "content": "one two"}]), max_tokens=100)
    assert g.prompt_tokens == 2 + 4 and g.completion_tokens == len(g.text.split()) and g.finish == "stop"
    vector = embedding("x", 8)
    assert vector == embedding("x", 8) != embedding("y", 8)
    assert abs(sum(v * v for v in vector) - 1) < 1e-3


def test_job_faults_merge() -> None:
    merged = JobFaults.merge([Fault(error_ids={"a"}, expire_after_fraction=0.8),
                              Fault(error_ids=["b"], expire_after_fraction=0.4, error_rate=0.1, error_status=429)])
    assert merged.error_ids == {"a", "b"} and merged.expire_after_fraction == 0.4 and merged.error_status == 429
    assert merged.request_fails("a") and JobFaults.from_dict(merged.to_dict()) == merged
    assert Fault(error_ids="abc").error_ids == {"abc"}
    assert Fault(http_status=429).affects_http and not Fault(http_status=429).affects_jobs


def test_custom_durations_and_per_request_time(tmp_path: Path) -> None:
    durations = Durations(validating=1, processing=0, per_request=2, finalizing=0)
    with Sandbox(state_dir=tmp_path, durations=durations) as sb:
        client = openai.OpenAI(api_key="k", base_url=sb.openai_base_url, max_retries=0)
        batch = upload_openai_batch(client, prompts(5))
        sb.advance(1 + 4)
        assert client.batches.retrieve(batch.id).request_counts.completed == 2
        sb.advance(6)
        assert client.batches.retrieve(batch.id).status == "completed"


class _FakeChat(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        reply = {"choices": [{"message": {"content": "REAL:" + body["messages"][-1]["content"]},
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 2}, "model": body["model"]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_chat_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeChat)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_forwarding_to_an_openai_compatible_server(tmp_path: Path, fake_chat_server: str) -> None:
    with Sandbox(state_dir=tmp_path, forward_url=fake_chat_server, forward_model="llama") as sb:
        client = openai.OpenAI(api_key="k", base_url=sb.openai_base_url, max_retries=0)
        batch = upload_openai_batch(client, prompts(2))
        sb.advance(60)
        batch = client.batches.retrieve(batch.id)
        texts = {r["custom_id"]: r["response"]["body"]["choices"][0]["message"]["content"]
                 for r in read_jsonl(client.files.content(batch.output_file_id).text)}
        assert texts == {"req-0": "REAL:question number 0", "req-1": "REAL:question number 1"}
        assert batch.usage.output_tokens == 4


def test_forwarding_failure_is_a_request_error(tmp_path: Path) -> None:
    with Sandbox(state_dir=tmp_path, forward_url="http://127.0.0.1:9/v1") as sb:
        client = openai.OpenAI(api_key="k", base_url=sb.openai_base_url, max_retries=0)
        batch = upload_openai_batch(client, prompts(1))
        sb.advance(60)
        batch = client.batches.retrieve(batch.id)
        assert batch.request_counts.failed == 1 and batch.output_file_id is None


# orjson reads and writes the result files' lines; these are the values where it differs from json.
ODD_LINES = [b'{"n": 18446744073709551616}', b'{"n": -9223372036854775809}', b'{"n": 1234567890123456789012}',
             b'{"n": NaN, "m": -Infinity}', b'{"n": 1e400}', b'{"s": "\\ud800"}', b'\xef\xbb\xbf{"a": 1}',
             '{"a": "é"}'.encode("utf-16"), b'{"a": 1, "b": 2, "a": 3}', b'{"f": 1e-05, "g": 0.00001234, "h": 1e16}',
             b'{"s": "\\u2028\\u0000\x7f\xc3\xa9 \\"/", "n": -0.0}']


@pytest.mark.parametrize("raw", ODD_LINES)
def test_lines_are_read_as_json_reads_them(raw: bytes) -> None:
    from overnight.sandbox.engine import parse_line

    value, exact = parse_line(raw)
    expected = json.loads(raw)
    assert json.dumps(value) == json.dumps(expected) and list(value) == list(expected)
    assert all(type(value[k]) is type(expected[k]) for k in expected)
    if "NaN" in json.dumps(expected) or "Infinity" in json.dumps(expected):
        assert not exact


@pytest.mark.parametrize("value", [
    {"f": [1e-05, 1e-09, 5e-324, 0.0001, 9.99e-05, 1e16, 1.5e300, -0.0, 0.1]},
    {"n": 2**64, "m": -(2**63) - 1}, {1: "int key", "s": "\u2028\x00\x7f\x1fé😀"},
])
def test_lines_are_written_as_json_writes_them(value: dict) -> None:
    from overnight.sandbox.engine import dump_line

    expected = (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    assert dump_line(value) == expected
    if "f" not in value:  # no float: the caller may say so
        assert dump_line(value, floats=False) == expected


def test_a_line_json_read_beyond_json_is_written_by_json() -> None:
    from overnight.sandbox.engine import dump_line, parse_line

    value, exact = parse_line(b'{"n": NaN, "i": Infinity}')
    assert dump_line(value, exact) == b'{"n":NaN,"i":Infinity}\n'
    with pytest.raises(UnicodeEncodeError):  # as json.dumps(...).encode() fails on a lone surrogate
        dump_line(parse_line(b'{"s": "\\ud800"}')[0])


def _openai_results(state: Path, lines: list[dict], forget_counts: bool) -> bytes:
    from overnight.sandbox import openai_api
    from overnight.sandbox.engine import Engine

    engine = Engine(state)
    engine.clock = Clock(1_700_000_000.0)
    openai_api.routes(engine)
    source = state / "input.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    path = engine.link_input("batch_same", [source])
    scan = engine.dialects["openai"].scan(path, "/v1/chat/completions", 100)
    engine.create_job("openai", "batch_same", scan, model=scan.model, metadata=None, endpoint="/v1/chat/completions",
                      extra={"input_file_id": "file-x", "output_expires_after": None})
    if forget_counts:  # as a job created before the counts were kept
        (state / "jobs" / "batch_same" / "prompt_tokens.i64").unlink()
    engine.advance(3600)
    result = engine.get_job("openai", "batch_same").result
    data = b"".join(engine.file_path(result[key]).read_bytes() for key in ("output_file_id", "error_file_id")
                    if result[key])
    engine.close()
    return data


def test_results_bill_the_prompt_tokens_counted_at_validation_as_they_would_count_them(tmp_path: Path) -> None:
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4o-mini", "n": 1 + i % 2, "max_tokens": 3 if i == 2 else None,
                       "messages": [{"role": "system", "content": "Be brief, 日本語 OK."},
                                    {"role": "user", "content": [{"type": "text", "text": f"question {i} " * i}]}]}}
             for i in range(6)]
    lines.append({**lines[0], "custom_id": "too-long", "body": {**lines[0]["body"], "max_tokens": 10**9}})
    kept = _openai_results(tmp_path / "kept", lines, forget_counts=False)
    assert kept == _openai_results(tmp_path / "recounted", lines, forget_counts=True)
    assert b"context_length_exceeded" in kept and kept.count(b'"prompt_tokens"') == 6
