"""overnight.sandbox: a stateful local emulator of the OpenAI, Anthropic, Mistral and Gemini batch APIs.

The official SDKs run against it unmodified::

    from overnight.sandbox import Sandbox

    with Sandbox(state_dir="state") as sb:            # manual clock, ephemeral port
        client = openai.OpenAI(api_key="sk-test", base_url=sb.openai_base_url)
        ...                                           # upload, create a batch
        sb.advance(60)                                # the batch completes
        sb.counters()["openai"]["jobs"]               # what the sandbox received

Requires the ``overnight[sandbox]`` extra (starlette, uvicorn, python-multipart).
"""

from .config import DEFAULT_LIMITS, Durations, JobLimits
from .control import SandboxControl, SandboxControlError
from .faults import Fault
from .responder import expected_reply
from .server import Sandbox, build_app, serve

__all__ = [
    "DEFAULT_LIMITS", "Durations", "Fault", "JobLimits", "Sandbox", "SandboxControl", "SandboxControlError",
    "build_app", "expected_reply", "serve",
]
