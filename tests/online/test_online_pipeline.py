"""Online mode through the pipeline DSL: a TextGeneration step with
``use_offline_batch_generation=False`` returns its rows in one run, and the run's last line
says what the online part cost."""

from __future__ import annotations

import logging

import pytest

from overnight import LLM, LoadDataFromDicts, Pipeline, TextGeneration

ROWS = [{"instruction": f"question number {i}", "id": i} for i in range(8)]
PRICES = {"input_mtok": 1.0, "output_mtok": 2.0}


def test_an_online_step_returns_every_row_in_one_run(online_fake, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="overnight")
    with Pipeline(name="online", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=ROWS)
        gen = TextGeneration(llm=LLM("fake/m", use_offline_batch_generation=False, prices=PRICES))
        load >> gen
    dataset = pipeline.run()
    rows = list(dataset)
    assert [r["generation"] for r in rows] == [f"echo: {r['instruction']}" for r in ROWS]
    assert all(r["generation_cost_usd"] > 0 for r in rows)
    assert len(online_fake.paid()) == 8 and online_fake.jobs() == []
    last = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cost ")][-1]
    assert "for 8 request(s) answered online" in last and "$0.0000 saved against online" in last


def test_the_live_display_shows_an_online_step(online_fake):
    import io

    from overnight.progress import LiveDisplay, Snapshot

    stream = io.StringIO()
    display = LiveDisplay(stream)
    snap = Snapshot(step="gen", provider="fake", jobs=(), total=10, collected=4, failed=1, retried=0,
                    cost_usd=None, started=0.0, eta=None, next_check=0.0, mode="online", in_flight=3)
    display.update(snap)
    display.close()
    out = stream.getvalue()
    assert "fake online" in out and "3 in flight, 4/10 collected" in out
    assert "online through fake, 3 in flight" in snap.line(1.0)


def test_an_estimate_of_an_online_step_is_at_online_prices(online_fake, tmp_path):
    from overnight.money import estimating

    def step(online):
        with Pipeline(name=f"est-{online}", cache_dir=tmp_path / "cache") as pipeline:
            load = LoadDataFromDicts(data=ROWS)
            gen = TextGeneration(llm=LLM("fake/m", use_offline_batch_generation=not online, prices=PRICES))
            load >> gen
        with estimating() as found:
            try:
                pipeline.run()
            except Exception:
                pass
        return found.steps[0]

    batch, online = step(False), step(True)
    assert online.cost_usd == pytest.approx(batch.online_cost_usd) and online.cost_usd == pytest.approx(
        2 * batch.cost_usd)
    assert online_fake.calls == [] and online_fake.jobs() == []


def test_ctrl_c_in_an_online_step_is_a_pipeline_not_finished(online_fake, tmp_path):
    import os
    import signal

    from overnight import PipelineNotFinished

    def press_ctrl_c(cid, outcome):
        if len(online_fake.calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    online_fake.on_call = press_ctrl_c
    with Pipeline(name="stop", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=ROWS)
        gen = TextGeneration(llm=LLM("fake/m", use_offline_batch_generation=False, online_concurrency=1))
        load >> gen
    with pytest.raises(PipelineNotFinished) as exc:
        pipeline.run()
    assert exc.value.interrupted
    assert "online generation was stopped" in str(exc.value) and "stopped by the user" in str(exc.value)
    online_fake.on_call = None
    assert len(list(pipeline.run())) == 8
    assert len(online_fake.paid()) == 8
