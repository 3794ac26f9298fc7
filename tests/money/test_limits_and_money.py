"""Real accounts, through each provider's official SDK against the sandbox: context
windows, queue limits (a quota is not a failure) and money (prices, billed cost,
estimates, budgets).
"""

from __future__ import annotations

from typing import Any

import pytest

from overnight import LLM, BudgetExceeded, Pipeline, PipelineNotFinished, TextGeneration, ValidationError
from overnight import tokens
from overnight.models import Message
from overnight.money import estimating, usd
from overnight.sandbox import Sandbox
from overnight.store import Store

PROVIDERS = ("openai", "anthropic", "mistral", "gemini")
KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "mistral": "MISTRAL_API_KEY",
        "gemini": "GEMINI_API_KEY"}
#: Models the plugins' tables know (for context windows) and whose windows the sandbox shares.
KNOWN = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "mistral": "mistral-small-latest",
         "gemini": "gemini-2.5-flash"}
#: Words past every window of a provider's table (Gemini's models take about a million tokens).
PAST_WINDOWS = {"gemini": 1_100_000}
#: Online USD per million tokens, so costs can be computed by hand.
PRICES = {"input_mtok": 2.0, "output_mtok": 8.0}


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    for provider, var in KEYS.items():
        monkeypatch.setenv(var, f"sk-test-{provider}")
    for var in ("GOOGLE_API_KEY", "GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    for var in ("OVERNIGHT_BUDGET_USD", "OVERNIGHT_OPENAI_MAX_ENQUEUED_TOKENS",
                "OVERNIGHT_ANTHROPIC_MAX_QUEUED_REQUESTS", "OVERNIGHT_MISTRAL_MAX_ENQUEUED_TOKENS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def sandbox(tmp_path):
    # A fast clock: a job (about 40 sandbox seconds) ends within a few wall milliseconds.
    with Sandbox(state_dir=tmp_path / "sandbox", speed=20_000) as sb:
        yield sb


@pytest.fixture
def manual(tmp_path):
    with Sandbox(state_dir=tmp_path / "sandbox-manual") as sb:
        yield sb


def base_url(sb: Sandbox, provider: str) -> str:
    return getattr(sb, f"{provider}_base_url")


def llm(sb: Sandbox, provider: str, model: str = "test-model", **kwargs: Any) -> LLM:
    kwargs.setdefault("max_retries", 0)
    return LLM(f"{provider}/{model}", base_url=base_url(sb, provider), **kwargs)


def pipeline(name: str, rows: list[dict[str, Any]], model: LLM, tmp_path) -> Pipeline:
    from overnight import LoadDataFromDicts

    with Pipeline(name=name, cache_dir=tmp_path / "home") as p:
        load = LoadDataFromDicts(data=rows)
        gen = TextGeneration(name="gen", llm=model)
        load >> gen
    return p


def rows(n: int, words: int = 12) -> list[dict[str, Any]]:
    return [{"instruction": f"Question {i}: " + " ".join(f"w{i}x{j}" for j in range(words))} for i in range(n)]


def cron(p: Pipeline, sb: Sandbox | None = None, runs: int = 60, **kwargs: Any):
    """Run as cron would until done (advancing a manual clock between runs)."""
    for _ in range(runs):
        try:
            return p.run(**kwargs)
        except PipelineNotFinished:
            if sb is not None:
                sb.advance(3600)
    raise AssertionError("not finished")


def sent(sb: Sandbox, provider: str) -> int:
    return sum(sb.counters()[provider]["http"].values())


def billable(sb: Sandbox, provider: str) -> int:
    """Jobs created and files uploaded: what could be billed (listing jobs to adopt is free)."""
    counters = sb.counters()[provider]
    return counters["jobs"] + counters["files"]


# --- (A) context windows ------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_over_context_request_is_refused_before_any_http_request(provider, manual, tmp_path):
    text = "word " * PAST_WINDOWS.get(provider, 250_000)  # 1.25 MB: about 250,000 tokens, past every window in the table
    data = [{"instruction": "short"}, {"instruction": text}]
    p = pipeline("ctx", data, llm(manual, provider, KNOWN[provider], generation_kwargs={"max_tokens": 100}), tmp_path)
    with pytest.raises(ValidationError) as exc:
        p.run()
    [problem] = exc.value.problems
    assert (problem.row, problem.field) == (1, "instruction"), problem
    assert "context window" in problem.message
    assert sent(manual, provider) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_context_window_override_and_max_tokens_past_the_window(provider, manual, tmp_path):
    data = [{"instruction": "word " * 1000}]  # ~1004 tokens
    p = pipeline("ctx2", data, llm(manual, provider, KNOWN[provider], context_window=1000,
                                    generation_kwargs={"max_tokens": 10}), tmp_path)
    with pytest.raises(ValidationError) as exc:
        p.run()
    assert exc.value.problems[0].field == "instruction" and "1,000-token context window" in str(exc.value)
    assert sent(manual, provider) == 0


def test_sandbox_refuses_over_context_per_request_in_each_shape(manual):
    import anthropic
    import openai
    from mistralai.client import Mistral

    big = "word " * 210_000  # ~210,000 tokens: past 128k / 131k / 200k
    oa = openai.OpenAI(api_key="k", base_url=manual.openai_base_url, max_retries=0)
    lines = "\n".join(
        __import__("json").dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}})
        for cid, text in (("ok", "hi"), ("big", big))
    ).encode()
    f = oa.files.create(file=("in.jsonl", lines, "application/jsonl"), purpose="batch")
    batch = oa.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    an = anthropic.Anthropic(api_key="k", base_url=manual.anthropic_base_url, max_retries=0)
    ab = an.messages.batches.create(requests=[
        {"custom_id": "big", "params": {"model": "claude-x", "max_tokens": 10,
                                        "messages": [{"role": "user", "content": big}]}}])
    mi = Mistral(api_key="k", server_url=manual.mistral_base_url)
    mj = mi.batch.jobs.create(endpoint="/v1/chat/completions", model="mistral-small-latest", requests=[
        {"custom_id": "big", "body": {"max_tokens": 10, "messages": [{"role": "user", "content": big}]}}])
    manual.advance(3600)

    done = oa.batches.retrieve(batch.id)
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    line = __import__("json").loads(oa.files.content(done.error_file_id).text.splitlines()[0])
    error = line["response"]["body"]["error"]
    assert line["response"]["status_code"] == 400 and error["code"] == "context_length_exceeded"
    assert "maximum context length is 128000 tokens" in error["message"]

    [result] = list(an.messages.batches.results(ab.id))
    assert result.result.type == "errored"
    assert result.result.error.error.type == "invalid_request_error"
    assert result.result.error.error.message.startswith("prompt is too long")

    job = mi.batch.jobs.get(job_id=mj.id)
    assert job.failed_requests == 1 and job.error_file
    text = mi.files.download(file_id=job.error_file).read().decode()
    assert "too large for model with 131072 maximum context length" in text


def test_sandbox_refuses_gemini_input_past_its_limit_per_request(manual):
    """Gemini bounds the input alone: a 400 INVALID_ARGUMENT per request, in its own words."""
    from google import genai

    client = genai.Client(api_key="k", http_options={"base_url": manual.gemini_base_url + "/"})
    big = "word " * PAST_WINDOWS["gemini"]
    job = client.batches.create(model="gemini-2.5-flash", src=[
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "metadata": {"key": "ok"}},
        {"contents": [{"role": "user", "parts": [{"text": big}]}], "metadata": {"key": "big"}}])
    manual.advance(3600)
    responses = {r.metadata["key"]: r for r in client.batches.get(name=job.name).dest.inlined_responses}
    assert responses["ok"].error is None and responses["ok"].response.text
    error = responses["big"].error
    assert error.code == 3 and error.message == ("The input token count exceeds the maximum number of tokens "
                                                 "allowed 1048576.")


def test_sandbox_refuses_a_gemini_create_past_the_queue_with_429_resource_exhausted(manual):
    from google import genai
    from google.genai import errors

    manual.set_queue_limits(max_queued_requests=1)
    client = genai.Client(api_key="k", http_options={"base_url": manual.gemini_base_url + "/"})
    src = [{"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "metadata": {"key": "a"}}]
    client.batches.create(model="gemini-2.5-flash", src=src)
    with pytest.raises(errors.ClientError) as exc:
        client.batches.create(model="gemini-2.5-flash", src=src)
    assert (exc.value.code, exc.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert exc.value.message.startswith("You exceeded your current quota")
    assert len([j for j in manual.jobs() if j["provider"] == "gemini"]) == 1  # nothing created


# --- (B) queue limits -----------------------------------------------------------------------


def _tokens(data: list[dict[str, Any]]) -> int:
    return sum(tokens.estimate([Message("user", r["instruction"])]) for r in data)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("mode", ["polling", "cron"])
def test_600_rows_under_a_queue_limit_of_a_third_finish_with_no_error(provider, mode, sandbox, tmp_path):
    data = rows(600)
    limit = _tokens(data) // 3
    # The sandbox enforces the account's limit; the user told overnight its figure, and
    # chunks of at most 100 requests let several jobs be in flight at once.
    sandbox.set_queue_limits(max_enqueued_tokens=limit)
    model = llm(sandbox, provider, max_enqueued_tokens=limit, poll_interval=0.001,
                offline_batch_generation_block_until_done=120 if mode == "polling" else None)
    p = pipeline("queue", data, model, tmp_path)
    dataset = p.run() if mode == "polling" else cron(p)
    out = list(dataset)
    assert len(out) == 600 and all(r["generation_error"] is None and r["generation"] for r in out)
    jobs = sandbox.jobs()
    assert len([j for j in jobs if j["provider"] == provider]) >= 3
    assert sandbox.counters()[provider].get("quota_refusals", 0) == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_quota_refusals_cost_no_attempt_and_overnight_learns_the_figure(provider, sandbox, tmp_path, capfd):
    """The user set no figure: the sandbox refuses (OpenAI fails the batch at validation with
    token_limit_exceeded, Anthropic 429, Gemini 429 RESOURCE_EXHAUSTED), overnight puts the rows back, learns a lower
    in-flight figure, says so once, and every row still succeeds (max_attempts=1: any counted
    attempt would make an error row)."""
    data = rows(300)
    if provider == "openai":
        sandbox.set_queue_limits(max_enqueued_tokens=_tokens(data) // 3)
    else:
        sandbox.set_queue_limits(max_queued_requests=100)
    model = llm(sandbox, provider, max_attempts=1, poll_interval=0.001,
                offline_batch_generation_block_until_done=120)
    p = pipeline("learn", data, model, tmp_path)
    out = list(p.run())
    assert all(r["generation_error"] is None for r in out) and len(out) == 300
    assert sandbox.counters()[provider].get("quota_refusals", 0) >= 1
    said = [line for line in capfd.readouterr().err.splitlines() if "for the account's queue limit" in line]
    assert len(said) == 1, said
    with Store.open(tmp_path / "home") as store:
        tokens, requests = store.learned_quota(provider, "test-model")
    assert tokens is not None and requests is not None


# --- (C) money ------------------------------------------------------------------------------


def _hand_cost(out: list[dict[str, Any]]) -> float:
    batch_in, batch_out = PRICES["input_mtok"] * 0.5, PRICES["output_mtok"] * 0.5
    return sum((r["generation_usage"]["input_tokens"] * batch_in
                + r["generation_usage"]["output_tokens"] * batch_out) / 1e6 for r in out)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_billed_cost_per_row_and_in_total_match_a_hand_computation(provider, sandbox, tmp_path, caplog):
    caplog.set_level("INFO", logger="overnight")
    data = rows(40)
    p = pipeline("bill", data, llm(sandbox, provider, prices=PRICES, poll_interval=0.001,
                                   offline_batch_generation_block_until_done=60), tmp_path)
    out = list(p.run())
    # The sandbox bills prompt tokens by length, with overnight's own estimate.
    assert [r["generation_usage"]["input_tokens"] for r in out] == [_tokens([r]) for r in data]
    for r in out:
        usage = r["generation_usage"]
        expected = (usage["input_tokens"] * 1.0 + usage["output_tokens"] * 4.0) / 1e6
        assert r["generation_cost_usd"] == pytest.approx(expected, abs=1e-12)
    total = sum(r["generation_cost_usd"] for r in out)
    assert total == pytest.approx(_hand_cost(out))
    with Store.open(tmp_path / "home") as store:
        totals = store.money_totals()
    assert totals["cost_usd"] == pytest.approx(total) and totals["saved_usd"] == pytest.approx(total)
    line = [r.message for r in caplog.records if r.message.startswith("cost $")]
    assert line and line[-1] == f"cost {usd(total)} at batch prices, {usd(total)} saved against online"


def test_the_cost_line_bills_a_request_repeated_by_several_rows_once(sandbox, tmp_path, caplog):
    caplog.set_level("INFO", logger="overnight")
    data = rows(10)
    p = pipeline("twice", data + data[:4], llm(sandbox, "openai", prices=PRICES, poll_interval=0.001,
                                                 offline_batch_generation_block_until_done=60), tmp_path)
    out = list(p.run())
    assert len(out) == 14 and [r["generation"] for r in out[10:]] == [r["generation"] for r in out[:4]]
    total = sum(r["generation_cost_usd"] for r in out[:10])  # the 4 repeated rows share their 4 requests
    line = [r.message for r in caplog.records if r.message.startswith("cost $")]
    assert line and line[-1] == f"cost {usd(total)} at batch prices, {usd(total)} saved against online"


def test_prices_come_from_the_price_library_with_batch_prices(sandbox, tmp_path):
    p = pipeline("lib", rows(5), llm(sandbox, "openai", "gpt-4o-mini", poll_interval=0.001,
                                     offline_batch_generation_block_until_done=60), tmp_path)
    out = list(p.run())
    # gpt-4o-mini in batch: $0.075 / $0.30 per million tokens (genai-prices' batch variant).
    for r in out:
        u = r["generation_usage"]
        assert r["generation_cost_usd"] == pytest.approx((u["input_tokens"] * 0.075 + u["output_tokens"] * 0.3) / 1e6)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_budget_below_the_estimate_submits_nothing(provider, manual, tmp_path):
    p = pipeline("poor", rows(50), llm(manual, provider, prices=PRICES), tmp_path)
    with pytest.raises(BudgetExceeded) as exc:
        p.run(budget_usd=0.000001)
    assert billable(manual, provider) == 0
    message = str(exc.value)
    assert "budget" in message and "run again with a higher budget" in message and "estimated at $" in message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_half_a_budget_submits_about_half_then_a_higher_one_finishes(provider, manual, tmp_path):
    data = rows(200)
    model = llm(manual, provider, prices=PRICES, expected_output_tokens=30)
    with estimating() as estimates:
        with pytest.raises(PipelineNotFinished):
            pipeline("half", data, model, tmp_path).run()
    estimate = estimates.steps[0].cost_usd
    assert billable(manual, provider) == 0

    p = pipeline("half", data, model, tmp_path)
    with pytest.raises(PipelineNotFinished):
        p.run(budget_usd=estimate / 2)
    first = manual.counters()[provider]["requests"]
    assert 80 <= first <= 110, first
    # Cron-style runs under the same budget collect what was submitted (real costs may
    # leave room for a little more), then stop cleanly.
    for _ in range(10):
        manual.advance(3600)
        try:
            p.run(budget_usd=estimate / 2)
        except PipelineNotFinished:
            continue
        except BudgetExceeded as exc:
            error = exc
            break
    else:
        raise AssertionError("the budget never stopped the run")
    submitted = manual.counters()[provider]["requests"]
    assert 80 <= submitted <= 150, submitted
    assert error.spent_usd <= estimate / 2 + 1e-9
    with Store.open(tmp_path / "home") as store:
        assert store.list_jobs(active_only=True) == []  # everything submitted was collected
    out = list(cron(p, manual, budget_usd=estimate * 1.5))
    assert len(out) == 200 and all(r["generation_error"] is None for r in out)
    billed = sum(r["generation_cost_usd"] for r in out)
    assert billed == pytest.approx(_hand_cost(out))
    assert billed <= estimate * 1.5


def test_estimate_reports_requests_tokens_and_costs_without_submitting(manual, tmp_path):
    data = rows(30)
    model = llm(manual, "openai", prices=PRICES, generation_kwargs={"max_tokens": 50})
    with estimating() as estimates:
        with pytest.raises(PipelineNotFinished):
            pipeline("est", data, model, tmp_path).run()
    assert sent(manual, "openai") == 0
    [step] = estimates.steps
    tokens = _tokens(data)
    assert (step.requests, step.input_tokens, step.max_output_tokens) == (30, tokens, 30 * 50)
    assert step.expected_output_tokens == 30 * 50  # the default (256) is bounded by max_tokens
    assert step.max_cost_usd == pytest.approx((tokens * 1.0 + 1500 * 4.0) / 1e6)
    assert step.online_cost_usd == pytest.approx(2 * step.cost_usd)


def test_a_budget_needs_a_price(manual, tmp_path):
    from overnight import ConfigurationError

    p = pipeline("noprice", rows(3), llm(manual, "openai", "no-such-model-xyz"), tmp_path)
    with pytest.raises(ConfigurationError, match="no price is known"):
        p.run(budget_usd=1.0)
    assert billable(manual, "openai") == 0


def test_queue_limits_through_the_control_api(manual):
    import openai

    from overnight.sandbox import SandboxControl

    control = SandboxControl(manual.url)
    control.set_queue_limits(max_enqueued_tokens=10, max_queued_requests=None)
    oa = openai.OpenAI(api_key="k", base_url=manual.openai_base_url, max_retries=0)
    line = ('{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o",'
            '"messages":[{"role":"user","content":"' + "word " * 50 + '"}]}}').encode()
    f = oa.files.create(file=("in.jsonl", line, "application/jsonl"), purpose="batch")
    batch = oa.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    manual.advance(60)
    failed = oa.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.errors.data[0].code == "token_limit_exceeded"
    assert failed.errors.data[0].message.startswith("Enqueued token limit reached for gpt-4o")
    control.set_queue_limits(max_enqueued_tokens=None)
    ok = oa.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    manual.advance(3600)
    assert oa.batches.retrieve(ok.id).status == "completed"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_10_mb_prompt_is_refused_for_a_model_the_table_does_not_know(provider, manual, tmp_path):
    # 10 MB (about 2 M tokens) for OpenAI, whose largest window is about 1 M tokens; 1.5 MB
    # (300 k tokens) is past every Anthropic and Mistral window already, and quicker.
    words = {"openai": 2_000_000, "gemini": 2_200_000}.get(provider, 300_000)  # Gemini: past 2,097,152
    data = [{"instruction": "word " * words}]
    p = pipeline("huge", data, llm(manual, provider, "some-future-model"), tmp_path)
    with pytest.raises(ValidationError) as exc:
        p.run()
    assert (exc.value.problems[0].row, exc.value.problems[0].field) == (0, "instruction")
    assert sent(manual, provider) == 0


def test_a_request_too_big_for_the_whole_queue_ends_as_an_error_row_not_a_loop(sandbox, tmp_path):
    sandbox.set_queue_limits(max_enqueued_tokens=5)  # less than any single request
    model = llm(sandbox, "openai", max_attempts=2, poll_interval=0.001, offline_batch_generation_block_until_done=60)
    out = list(pipeline("tiny-queue", rows(3), model, tmp_path).run())
    assert len(out) == 3 and all("queue limit" in r["generation_error"] for r in out)


def test_learned_queue_figures_only_go_down_and_are_forgotten_after_a_day(tmp_path, monkeypatch):
    import overnight.store as st

    with Store.open(tmp_path / "home") as store:
        assert store.learn_quota("openai", "m", tokens=1000, requests=10)
        assert not store.learn_quota("openai", "m", tokens=5000, requests=50)  # never raised
        assert store.learn_quota("openai", "m", tokens=400)
        assert store.learned_quota("openai", "m") == (400, 10)
        assert store.learned_quota("openai", "other") == (None, None)  # per provider and model
        now = st.time.time()
        monkeypatch.setattr(st.time, "time", lambda: now + st.QUOTA_MEMORY + 1)
        assert store.learned_quota("openai", "m") == (None, None)
        assert store.learn_quota("openai", "m", tokens=3000)  # learned afresh
        assert store.learned_quota("openai", "m") == (3000, None)
