"""distilabel's offline batch example runs with only its imports changed (issue 14, part 1)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overnight import LLM, LoadDataFromDicts, LoadDataFromJSONL, MapStep, Pipeline, TextGeneration
from overnight.errors import ConfigurationError, PipelineNotFinished
from overnight.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "distilabel_port.py"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


def run_script(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    full_env.update(env, OVERNIGHT_HOME=str(home))
    return subprocess.run([sys.executable, *args, str(SCRIPT)], env=full_env, capture_output=True, text=True,
                          timeout=120, cwd=str(home.parent))


def test_the_ported_script_submits_then_collects(sandbox, tmp_path):
    env = {"OPENAI_BASE_URL": sandbox.openai_base_url, "OPENAI_API_KEY": "sk-sandbox"}
    first = run_script(env, tmp_path / "home", "-m", "overnight.cli", "run")
    assert first.returncode == 75, first.stderr
    assert "Traceback" not in first.stderr
    sandbox.advance(3600)
    second = run_script(env, tmp_path / "home")  # as distilabel users run it: python script.py
    assert second.returncode == 0, second.stderr
    # output_mappings renamed the loader's "prompt" to TextGeneration's "instruction".
    assert "What is the capital of Australia?\n  -> Sandbox answer to: What is the capital of Australia?" \
        in second.stdout
    assert "Name a prime number above 100.\n  -> Sandbox answer to:" in second.stdout


def test_the_port_differs_from_the_seed_only_in_imports_and_the_loader_source():
    """Beyond imports, only the Hub's repo_id/split became the dicts' data (a comment says so)."""
    tree = ast.parse(SCRIPT.read_text())
    body = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign))
            or (isinstance(node, ast.Assign) and node.targets[0].id != "PROMPTS")]  # type: ignore[attr-defined]
    code = "\n".join(ast.unparse(node) for node in body)
    assert "with Pipeline() as pipeline:" in code
    assert "LoadDataFromHub(output_mappings={'prompt': 'instruction'})" in code
    assert "OpenAILLM(model='gpt-3.5-turbo', use_offline_batch_generation=True)" in code
    assert "'batch_size': 500" in code and "distiset['default']['train']" in code


def test_plugins_export_their_llm_classes():
    from overnight_anthropic import AnthropicLLM
    from overnight_gemini import GeminiLLM
    from overnight_mistral import MistralLLM
    from overnight_openai import OpenAILLM

    for cls, provider in ((OpenAILLM, "openai"), (AnthropicLLM, "anthropic"), (MistralLLM, "mistral"),
                          (GeminiLLM, "gemini")):
        llm = cls(model="some-model", use_offline_batch_generation=True, generation_kwargs={"max_tokens": 5})
        assert isinstance(llm, LLM)
        assert (llm.provider, llm.model_name, llm.model) == (provider, "some-model", f"{provider}/some-model")
        # The same outputs as LLM("provider/model"): same signature, so the same cache.
        assert llm.signature() == LLM(f"{provider}/some-model", generation_kwargs={"max_tokens": 5}).signature()
        assert cls(model=f"{provider}/some-model").model == f"{provider}/some-model"
        assert "api_key" not in repr(cls(model="m", api_key="sk-secret-1234"))


def test_default_pipeline_name_comes_from_the_script_and_its_steps():
    def build(*extra: str) -> Pipeline:
        with Pipeline() as pipeline:
            load = LoadDataFromDicts(data=[{"a": 1}])
            for name in extra:
                load >> MapStep(name=name, fn=lambda row: row)
        return pipeline

    first, again, other = build(), build(), build("more")
    assert first.name == again.name and first.name.startswith("test_distilabel_port-")
    assert other.name != first.name
    assert Pipeline(name="given").name == "given"


def test_mappings_on_every_step(fake, tmp_path):
    with Pipeline(name="maps") as pipeline:
        load = LoadDataFromDicts(data=[{"question": "q0", "keep": 1}], output_mappings={"question": "prompt"})
        generate = TextGeneration(
            llm=LLM("fake/model"), input_mappings={"instruction": "prompt"}, output_mappings={"generation": "answer"},
        )
        upper = MapStep(fn=lambda row: {**row, "loud": row["text"].upper()}, input_mappings={"text": "answer"},
                        output_mappings={"loud": "shout"})
        load >> generate >> upper
    with pytest.raises(PipelineNotFinished):
        pipeline.run()
    fake.advance()
    row = pipeline.run()[0]
    # A mapped input keeps its column's name in the output; mapped outputs are renamed.
    assert row["prompt"] == "q0" and row["keep"] == 1 and "instruction" not in row and "question" not in row
    assert "generation" not in row and row["generation_error"] is None
    assert row["shout"] == row["answer"].upper() and row["answer"] != row["shout"]
    assert "text" not in row and "loud" not in row


def test_loader_arguments_from_run_parameters(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"instruction": "x"}\n{"instruction": "y"}\n')
    with Pipeline(name="params") as pipeline:
        load = LoadDataFromJSONL()
    assert [r["instruction"] for r in pipeline.run(parameters={load.name: {"path": str(path), "batch_size": 1}})] \
        == ["x", "y"]
    with Pipeline(name="missing") as missing:
        LoadDataFromJSONL(name="load")
    with pytest.raises(ConfigurationError, match=r"step 'load': no path given.*parameters=\{'load': \{'path'"):
        missing.run()
    with pytest.raises((ConfigurationError, ValueError)):
        LoadDataFromDicts(data=[], batch_size=0)


def test_distiset_access_pattern(tmp_path):
    with Pipeline(name="distiset") as pipeline:
        LoadDataFromDicts(data=[{"a": 1}, {"a": 2}])
    distiset = pipeline.run()
    train = distiset["default"]["train"]
    assert train is distiset and train["a"] == [1, 2]
    with pytest.raises(KeyError, match="did you mean 'a'"):
        distiset["A"]
