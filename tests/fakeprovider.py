"""A small provider plugin for the core's tests, with its state on disk.

It stands for a provider whose batch API the tests drive: jobs finish when the test
advances the fake clock, and faults (per-request errors, expiry, failure, crashes) are
set through :class:`FakeProvider` methods. Its state lives in a directory so a pipeline
run in a subprocess sees the same jobs as the test process.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

from overnight import (
    Capabilities,
    InvalidRequest,
    JobRef,
    JobState,
    JobStatus,
    Limits,
    MissingCredentials,
    ProviderInfo,
    Result,
    SubmissionRejected,
    Usage,
    hookimpl,
)


def reply_to(line: dict[str, Any]) -> str:
    """The fake provider's answer: a pure function of the request."""
    return "echo: " + line["messages"][-1]["content"]


class FakeProvider:
    """A plugin object serving one provider (``fake`` by default)."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        name: str = "fake",
        limits: Limits | None = None,
        find_by_tag: bool = True,
        cancel: bool = True,
        duration: int = 10,
    ) -> None:
        self.dir = Path(state_dir)
        (self.dir / "jobs").mkdir(parents=True, exist_ok=True)
        self.name = name
        self.limits = limits or Limits(max_requests=100, max_bytes=1_000_000, max_line_bytes=2_000)
        self.capabilities = Capabilities(cancel=cancel, find_by_tag=find_by_tag)
        self.duration = duration

    # -- test controls -----------------------------------------------------------------

    def _read(self, name: str, default: Any) -> Any:
        path = self.dir / name
        return json.loads(path.read_text()) if path.exists() else default

    def _write(self, name: str, value: Any) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(json.dumps(value))
        tmp.replace(self.dir / name)

    @property
    def now(self) -> int:
        return self._read("clock.json", 0)

    def advance(self, seconds: int = 3600) -> None:
        self._write("clock.json", self.now + seconds)

    def set_faults(self, **faults: Any) -> None:
        """``errors``: {custom_id or "*": times to fail}; ``expire_after``: n rows done
        before expiry; ``fail``: fail the next job; ``reject``: refuse the next n
        creates; ``crash_after_create``: raise after creating the job; ``find_fails``:
        find_job cannot tell; ``stuck``: never finish."""
        self._write("faults.json", faults)

    @property
    def faults(self) -> dict[str, Any]:
        return self._read("faults.json", {})

    def jobs(self) -> list[dict[str, Any]]:
        return sorted(
            (json.loads(p.read_text()) for p in (self.dir / "jobs").glob("*.json")),
            key=lambda j: j["seq"],
        )

    @property
    def submitted_requests(self) -> int:
        return sum(len(j["lines"]) for j in self.jobs())

    def _save(self, job: dict[str, Any]) -> None:
        path = self.dir / "jobs" / f"{job['id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job))
        tmp.replace(path)

    def _load(self, job_id: str) -> dict[str, Any]:
        return json.loads((self.dir / "jobs" / f"{job_id}.json").read_text())

    # -- the hooks ---------------------------------------------------------------------

    @hookimpl
    def register_providers(self) -> list[ProviderInfo]:
        return [
            ProviderInfo(
                name=self.name,
                limits=self.limits,
                capabilities=self.capabilities,
                extra_params={"fake_option"},
                unsupported_params={"seed"},
                secret_env=("FAKE_API_KEY",),
            )
        ]

    @hookimpl
    def validate_options(self, provider: str, options: dict[str, Any]) -> None:
        if not (options.get("api_key") or os.environ.get("FAKE_API_KEY")):
            raise MissingCredentials("set FAKE_API_KEY or pass api_key= to LLM(...)")

    @hookimpl
    def build_request(self, provider: str, request: Any) -> dict[str, Any]:
        params = request.params
        if params.stop and len(params.stop) > 2:
            raise InvalidRequest("at most 2 stop sequences", field="stop")
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if params.max_tokens is not None:
            body["max_tokens"] = params.max_tokens
        for name in ("temperature", "top_p", "response_format"):  # seed is declared unsupported
            if getattr(params, name) is not None:
                body[name] = getattr(params, name)
        if params.stop:
            body["stop"] = list(params.stop)
        body.update(params.extra)
        return {"custom_id": request.custom_id, **body}

    @hookimpl
    def submit(self, provider: str, chunk: Any, options: dict[str, Any]) -> JobRef:
        faults = self.faults
        if faults.get("reject"):
            faults["reject"] -= 1
            self.set_faults(**faults)
            raise SubmissionRejected("400 invalid_request_error: model not available for batch")
        seq = len(self.jobs())
        job = {
            "id": f"job-{seq}-{uuid.uuid4().hex[:6]}",
            "seq": seq,
            "tag": chunk.tag,
            "model": chunk.model,
            "lines": list(chunk.lines()),
            "created": self.now,
            "cancelled": False,
            "failed": bool(faults.get("fail")),
            "expire_after": faults.get("expire_after"),
            "stuck": bool(faults.get("stuck")),
        }
        errors = dict(faults.get("errors", {}))
        job["errors"] = [l["custom_id"] for l in job["lines"] if errors.get(l["custom_id"], errors.get("*", 0)) > 0]
        for cid in job["errors"]:  # each listed id fails a bounded number of times
            key = cid if cid in errors else "*"
            if key != "*":
                errors[key] -= 1
        self._save(job)
        if faults.get("fail"):
            faults.pop("fail")
        if "errors" in faults:
            faults["errors"] = errors
        self.set_faults(**faults)
        if faults.get("crash_after_create"):
            self.set_faults(**{k: v for k, v in faults.items() if k != "crash_after_create"})
            raise ConnectionError("connection reset after the job was created")
        return JobRef(provider=provider, remote_id=job["id"], tag=chunk.tag, data={"seq": seq})

    def _state(self, job: dict[str, Any]) -> JobState:
        if job["failed"]:
            return JobState.FAILED
        if job["cancelled"]:
            return JobState.CANCELLED
        if job["stuck"] or self.now < job["created"] + self.duration:
            return JobState.RUNNING
        if job["expire_after"] is not None:
            return JobState.EXPIRED
        return JobState.FINISHED

    @hookimpl
    def check(self, provider: str, job: JobRef, options: dict[str, Any]) -> JobStatus:
        data = self._load(job.remote_id)
        state = self._state(data)
        done = len(data["lines"]) if state is JobState.FINISHED else 0
        return JobStatus(state=state, total=len(data["lines"]), completed=done, raw_status=state.value)

    @hookimpl
    def fetch(self, provider: str, job: JobRef, options: dict[str, Any]) -> Iterator[Result]:
        data = self._load(job.remote_id)
        state = self._state(data)
        if state is JobState.FAILED:
            return iter(())
        ran = len(data["lines"]) if data["expire_after"] is None else data["expire_after"]
        if data["cancelled"]:
            ran = 0
        return self._results(data, ran)

    def _results(self, data: dict[str, Any], ran: int) -> Iterator[Result]:
        for i, line in enumerate(reversed(data["lines"])):  # out of order on purpose
            cid = line["custom_id"]
            if len(data["lines"]) - 1 - i >= ran:
                yield Result(custom_id=cid, status="unfinished")
            elif cid in data["errors"]:
                yield Result(custom_id=cid, status="errored", error="fake server error")
            else:
                text = reply_to(line)
                yield Result(
                    custom_id=cid,
                    status="succeeded",
                    text=text,
                    usage=Usage(input_tokens=len(line["messages"][-1]["content"].split()), output_tokens=len(text.split())),
                    finish_reason="stop",
                    raw={"id": cid},
                )

    @hookimpl
    def cancel(self, provider: str, job: JobRef, options: dict[str, Any]) -> None:
        data = self._load(job.remote_id)
        data["cancelled"] = True
        self._save(data)

    @hookimpl
    def find_job(self, provider: str, tag: str, options: dict[str, Any]) -> JobRef | None:
        if self.faults.get("find_fails"):
            raise ConnectionError("cannot list jobs right now")
        for job in self.jobs():
            if job["tag"] == tag:
                return JobRef(provider=provider, remote_id=job["id"], tag=tag, data={"seq": job["seq"]})
        return None
