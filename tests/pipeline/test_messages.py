"""Messages a new user meets (issue 14, section 4): did you mean, true counts, no wrong advice."""

from __future__ import annotations

import pytest

from overnight import LLM, LoadDataFromDicts, MapStep, Pipeline, TextGeneration
from overnight.errors import ConfigurationError, PipelineNotFinished, ProviderNotFound, ValidationError
from overnight.plugins import PluginRegistry


def pipeline(rows, llm=None, **generation):
    with Pipeline(name="messages") as p:
        load = LoadDataFromDicts(name="load", data=rows)
        generate = TextGeneration(name="generate", llm=llm or LLM("fake/m"), **generation)
        load >> generate
        generate >> MapStep(name="after", fn=lambda row: row)
    return p


def test_a_mistyped_provider_gets_did_you_mean_and_no_package():
    registry = PluginRegistry([], entrypoints=False)
    with pytest.raises(ProviderNotFound) as exc:
        registry.provider("openia")
    message = str(exc.value)
    assert "Did you mean 'openai' (`pip install overnight-openai`)?" in message
    assert "overnight-openia" not in message
    with pytest.raises(ProviderNotFound) as exc:
        registry.provider("mistral")
    assert "pip install overnight-mistral" in str(exc.value)
    with pytest.raises(ProviderNotFound) as exc:
        registry.provider("zzzz")
    assert "pip install" not in str(exc.value) and "Check the spelling" in str(exc.value)


def test_openia_slash_model_in_a_pipeline(fake):
    with pytest.raises(ProviderNotFound) as exc:
        pipeline([{"instruction": "x"}], llm=LLM("openia/gpt-4o")).run()
    assert "overnight-openia" not in str(exc.value) and "'openai'" in str(exc.value)


def test_step_parameter_and_column_names_get_did_you_mean(fake):
    p = pipeline([{"instructions": "x"}])
    with pytest.raises(ConfigurationError, match=r"unknown step\(s\) 'generat' \(did you mean 'generate'\?\)"):
        p.run(parameters={"generat": {}})
    with pytest.raises(ConfigurationError, match=r"no parameter 'system_promt' \(did you mean 'system_prompt'\?\)"):
        p.run(parameters={"generate": {"system_promt": "hi"}})
    with pytest.raises(ValidationError, match=r"missing column \(did you mean 'instructions'\?\)"):
        p.run()


def test_an_unknown_option_names_the_closest_and_blames_the_setting_not_a_row(fake):
    with pytest.raises(ValidationError) as exc:
        pipeline([{"instruction": "x"}], llm=LLM("fake/m", generation_kwargs={"max_token": 5})).run()
    message = str(exc.value)
    assert message.startswith("the step's settings cannot be sent; nothing was submitted.")
    assert "input row(s)" not in message and "(did you mean 'max_tokens'?)" in message
    assert fake.submitted_requests == 0


def test_thousands_of_bad_rows_are_counted_truly(fake):
    rows = [{"instruction": ""} for _ in range(5000)] + [{"instruction": "fine"}]
    with pytest.raises(ValidationError) as exc:
        pipeline(rows).run()
    assert str(exc.value).startswith("5000 input row(s) cannot be sent")
    assert exc.value.bad_rows == 5000 and "... and 4980 more bad row(s)" in str(exc.value)
    assert "1001" not in str(exc.value)


def test_interrupted_polling_does_not_advise_what_is_set_and_names_waiting_steps(fake, monkeypatch):
    from overnight import polling

    def interrupted(stop, delay):
        return True  # as if Ctrl+C arrived during the first wait

    monkeypatch.setattr(polling, "wait", interrupted)
    p = pipeline([{"instruction": "x"}], llm=LLM("fake/m", offline_batch_generation_block_until_done=600))
    with pytest.raises(PipelineNotFinished) as exc:
        p.run()
    message = str(exc.value)
    assert exc.value.interrupted and "polling stopped by the user" in message
    assert "Steps waiting for these results: after." in message
    assert "offline_batch_generation_block_until_done" not in message


def test_without_polling_the_advice_to_wait_stays(fake):
    with pytest.raises(PipelineNotFinished) as exc:
        pipeline([{"instruction": "x"}]).run()
    assert "Steps waiting for these results: after." in str(exc.value)
    assert "offline_batch_generation_block_until_done=<seconds>" in str(exc.value)


def test_a_failed_submit_names_the_provider_without_an_article(fake):
    fake.set_faults(crash_after_create=True)
    with pytest.raises(Exception) as exc:
        pipeline([{"instruction": "x"}]).run()
    message = str(exc.value)
    assert "submitting fake job " in message and "submitting a fake" not in message


def test_the_final_lines_count_error_rows(fake, caplog):
    import logging

    fake.set_faults(errors={"*": 99})
    rows = [{"instruction": "a"}, {"instruction": "b"}]
    p = pipeline(rows, llm=LLM("fake/m", max_attempts=1, prices={"input_mtok": 1.0, "output_mtok": 1.0}))
    with pytest.raises(PipelineNotFinished):
        p.run()
    fake.advance()
    with caplog.at_level(logging.INFO, logger="overnight"):
        p.run()
    lines = [r.getMessage() for r in caplog.records]
    assert any("step 'after' wrote 2 rows to " in line and line.endswith(" (2 with errors)") for line in lines), lines
    assert lines[-1].endswith("; 2 row(s) ended as errors") and lines[-1].startswith("cost $"), lines[-1]


def test_client_options_and_llm_parameters_get_did_you_mean(fake, monkeypatch):
    from overnight_anthropic import AnthropicLLM
    from overnight_mistral import MistralLLM

    from overnight import plugins

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("MISTRAL_API_KEY", "mi-test")
    previous = plugins.set_registry(PluginRegistry())  # the installed plugins
    try:
        for llm in (AnthropicLLM(model="claude-haiku-4-5", api_kye="x"), MistralLLM(model="mistral-small", api_kye="x")):
            with pytest.raises(ConfigurationError, match=r"api_kye.*\(did you mean 'api_key'\?\)"):
                llm.load()
    finally:
        plugins.set_registry(previous)
    p = pipeline([{"instruction": "x"}])
    with pytest.raises(ConfigurationError, match=r"no run parameter 'generation_kwarg' \(did you mean 'generation_kwargs'\?\)"):
        p.run(parameters={"generate": {"llm": {"generation_kwarg": {}}}})
