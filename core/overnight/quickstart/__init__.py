"""``overnight quickstart``: the whole tool end to end, with no API key and no network.

It starts the sandbox in-process (its state under the cache directory, so a second run
sees the jobs of the first), points the OpenAI plugin at it, and runs a small pipeline
over the bundled prompts: load → generate with offline batch generation → done,
polling with progress until the batch is collected. Run it again and it reuses what
was paid for instead of submitting again.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from importlib import resources
from pathlib import Path

from overnight.errors import ConfigurationError, NotFinished

PIPELINE = "quickstart"
MODEL = "openai/gpt-4o-mini"


def prompts_path() -> Path:
    """The bundled prompts (package data): 105 questions, haiku and how-to requests."""
    return Path(str(resources.files(__package__) / "prompts.jsonl"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overnight quickstart",
        description="Run a 105-prompt batch pipeline against the local sandbox (no key, no network).",
    )
    parser.add_argument("--rows", type=int, default=None, help="use only the first N prompts")
    parser.add_argument(
        "--speed", type=float, default=20.0,
        help="sandbox clock speed: sandbox seconds per wall second (default 20; a batch takes ~40 sandbox s)",
    )
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the batch (default 300)")
    parser.add_argument("--show", type=int, default=3, help="rows to print at the end (default 3)")
    return parser


def quickstart(argv: list[str] | None = None) -> int:
    """Run the quickstart pipeline; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        from overnight.sandbox import Sandbox
    except ImportError:
        raise ConfigurationError(
            "the quickstart needs the sandbox: pip install 'overnight[sandbox]'"
        ) from None
    from overnight import plugins
    from overnight.llm import LLM
    from overnight.pipeline import Pipeline
    from overnight.loaders import LoadDataFromJSONL
    from overnight.store import default_cache_dir
    from overnight.tasks import TextGeneration

    if "openai" not in plugins.get_registry().provider_names:
        raise ConfigurationError("the quickstart uses the OpenAI plugin: pip install overnight-openai")

    cache_dir = default_cache_dir()
    with Sandbox(state_dir=cache_dir / "quickstart-sandbox", speed=args.speed) as sandbox:
        before = sandbox.counters()["openai"]["requests"]
        say(f"Sandbox (a local emulator of the OpenAI Batch API) listening on {sandbox.url}")
        with Pipeline(name=PIPELINE) as pipeline:
            load = LoadDataFromJSONL(name="load_prompts", path=str(prompts_path()), num_examples=args.rows)
            generate = TextGeneration(
                name="answer",
                llm=LLM(
                    MODEL,
                    offline_batch_generation_block_until_done=args.wait,
                    poll_interval=0.5,
                    generation_kwargs={"max_tokens": 256, "temperature": 0.7},
                    # The sandbox accepts any key; a real run reads OPENAI_API_KEY instead.
                    api_key="sk-sandbox-quickstart",
                    base_url=sandbox.openai_base_url,
                ),
                system_prompt="You are a concise, friendly assistant.",
            )
            load >> generate
        from overnight.money import active_estimates

        try:
            dataset = pipeline.run()
        except NotFinished as exc:
            if active_estimates() is not None:  # `overnight estimate quickstart`: planned only
                raise

            say(str(exc))
            say("Run `overnight quickstart` again to resume: nothing will be submitted twice.")
            return 75
        sent = sandbox.counters()["openai"]["requests"] - before

    rows = dataset.to_list()  # type: ignore[union-attr]  # one leaf step: one Dataset
    say("")
    for row in rows[: args.show]:
        say(f"> {row['instruction']}")
        say(textwrap.indent(textwrap.fill(str(row["generation"]), 88), "  "))
    errors = sum(1 for row in rows if row["generation_error"])
    say("")
    if sent:
        say(f"Done: {len(rows)} rows, {errors} errors; {sent} requests were sent to the batch API.")
    else:
        say(f"Done: {len(rows)} rows, {errors} errors, all reused from the previous run: nothing was submitted.")
    say(f"Dataset written to {dataset.path}")  # type: ignore[union-attr]
    say("Next: `overnight status`, `overnight jobs`, or the examples/ scripts against a real provider.")
    return 0


def say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(quickstart())


__all__ = ["quickstart", "prompts_path"]
