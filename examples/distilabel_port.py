"""distilabel's offline batch generation example, ported: only the imports changed.

The seed script (distilabel's documentation)::

    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromHub
    from distilabel.steps.tasks import TextGeneration

    with Pipeline() as pipeline:
        load_data = LoadDataFromHub(output_mappings={"prompt": "instruction"})
        text_generation = TextGeneration(
            llm=OpenAILLM(model="gpt-3.5-turbo", use_offline_batch_generation=True)
        )
        load_data >> text_generation

    if __name__ == "__main__":
        distiset = pipeline.run(
            parameters={
                load_data.name: {
                    "repo_id": "distilabel-internal-testing/instruction-dataset",
                    "split": "test",
                    "batch_size": 500,
                },
            }
        )

Here the Hub loader is swapped for rows given as parameters (the tests run offline);
with ``overnight[hub]`` installed, ``from overnight import LoadDataFromHub`` and the
seed's parameters work unchanged. Run it against the sandbox::

    overnight sandbox serve --port 8080 --state-dir /tmp/sandbox --speed 60 &
    OPENAI_BASE_URL=http://127.0.0.1:8080/openai/v1 OPENAI_API_KEY=sk-sandbox overnight run examples/distilabel_port.py
"""

from overnight import LoadDataFromDicts as LoadDataFromHub  # the Hub loader, swapped for dicts
from overnight import Pipeline
from overnight import TextGeneration
from overnight_openai import OpenAILLM

PROMPTS = [{"prompt": p} for p in ("What is the capital of Australia?", "Name a prime number above 100.")]

with Pipeline() as pipeline:
    load_data = LoadDataFromHub(output_mappings={"prompt": "instruction"})
    text_generation = TextGeneration(
        llm=OpenAILLM(model="gpt-3.5-turbo", use_offline_batch_generation=True)
    )
    load_data >> text_generation

if __name__ == "__main__":
    distiset = pipeline.run(
        parameters={
            load_data.name: {
                "data": PROMPTS,  # the Hub loader's "repo_id" and "split"
                "batch_size": 500,
            },
        }
    )
    for row in distiset["default"]["train"]:
        print(f"{row['instruction']}\n  -> {row['generation'] or row['generation_error']}")
