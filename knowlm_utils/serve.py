"""``knowlm serve``: an HTTP API over a :class:`~knowlm_utils.generation.Generator` (FastAPI + uvicorn).

    knowlm serve --model RUN/final [--adapter RUN/final/adapter] [--8bit] [--host 127.0.0.1] [--port 8000]

Endpoints:

* ``POST /generate`` — KnowLM's contract (its vLLM API server, §2.4):
  ``{"instruction", "input"?, "parameters"?: {top_p, top_k, max_tokens, temperature,
  presence_penalty, frequency_penalty, …}, "template"?}`` → ``{"generated_text",
  "num_output_tokens_cf", "error"}`` (plus ``finish_reason``, ``num_prompt_tokens`` and
  ``warnings``). ``instruction`` is required, ``input`` optional; the prompt is built with the
  run's templates (``template``: ``auto`` picks the language's, ``none`` sends the text as it is).
  Defaults differ from KnowLM's on purpose: ``max_tokens`` 256 (vLLM's 16 cut answers short) and
  greedy decoding (temperature 0; a temperature > 0 turns sampling on, and top_p/top_k given
  without it are reported in ``warnings``, never silently dropped).
* ``GET /is_ready`` — ``true`` once the model is loaded (KnowLM's health check).
* ``POST /v1/completions`` and ``POST /v1/chat/completions`` — the OpenAI API (``stream: true``:
  server-sent events ``data: {json}`` ending with ``data: [DONE]``); ``GET /v1/models``.
  Differences: one choice (``n`` 1), no logprobs, greedy unless ``temperature`` > 0, ``top_k``
  / ``repetition_penalty`` / ``num_beams`` / ``seed`` / ``template`` accepted as extensions. A chat
  becomes one prompt: the system message, each earlier user turn in the template followed by
  the assistant's reply, then the last user message in the template.

Safety and limits: binds 127.0.0.1 unless told otherwise; request bodies over ``max_body_bytes``
get 413, bodies that are not JSON 415; unknown fields, wrong types and values out of range get 400
with a one-line message;
``max_tokens`` is capped by ``max_tokens_limit`` (and the model's context); an optional API key
(``KNOWLM_API_KEY`` or ``--api-key-file``) is required as ``Authorization: Bearer KEY`` or
``X-API-Key`` on every endpoint but ``/is_ready`` and the docs (401 otherwise).

Concurrency: a **queue**, not batching. One worker thread owns the model and runs the requests
one at a time, first come first served; up to ``max_queue`` more wait (503 beyond that). So
parallel clients get exactly the outputs they would get one after another, a seeded sample does
not depend on its neighbours, and memory stays that of one generation; the price is latency
under load (see ``benchmarks/bench_serve.py``). A streaming client that disconnects cancels its
generation after the current token.
"""

import argparse
import asyncio
import dataclasses
import hmac
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from .generate_cli import add_model_arguments, generator_from_args
from .generation import (TEMPLATE_AUTO, TEMPLATE_NONE, Generation, GenerationParams, Generator, PRESETS, build_prompt,
                         preset)

log = logging.getLogger("knowlm.serve")
API_KEY_ENV = "KNOWLM_API_KEY"
OPEN_PATHS = ("/is_ready", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")


@dataclasses.dataclass
class ServeSettings:
    """What a server allows and assumes (``knowlm serve`` flags)."""

    host: str = "127.0.0.1"            # the interface to bind (0.0.0.0 exposes it to the network)
    port: int = 8000                   # 0: a free port
    api_key: str | None = None         # required from clients when set
    max_body_bytes: int = 64 * 1024    # larger request bodies: 413
    max_tokens_limit: int = 1024       # the largest max_tokens a request may ask for
    default_max_tokens: int = 256      # max_tokens when a request does not say
    max_queue: int = 32                # requests waiting beside the one running; more: 503
    preset: str = "ie"                 # decoding a request starts from (ie: greedy)
    template: str = TEMPLATE_AUTO      # prompt template when a request does not say
    model_name: str = "knowlm"         # the "model" of OpenAI responses and /v1/models

    def __post_init__(self) -> None:
        for key in ("max_body_bytes", "max_tokens_limit", "default_max_tokens", "max_queue"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) must be <= max_tokens_limit "
                             f"({self.max_tokens_limit})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        preset(self.preset)
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty")


class ApiError(Exception):
    """An error answered with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, " ".join(str(message).split()), kind


# ================================================================================== the queue ==
class _Job:
    """One request for the worker: ``prepare()`` (build and check the prompt) then
    ``execute(prepared, put, cancel)``; results and text chunks go back to the event loop."""

    END = object()

    def __init__(self, loop: asyncio.AbstractEventLoop, prepare: Callable[[], Any],
                 execute: Callable[[Any, Callable[[str], None] | None, threading.Event], Any], streaming: bool):
        self.loop, self.prepare, self.execute = loop, prepare, execute
        self.cancel = threading.Event()
        self.ready: asyncio.Future = loop.create_future()
        self.done: asyncio.Future = loop.create_future()
        self.chunks: asyncio.Queue | None = asyncio.Queue() if streaming else None

    def _back(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the event loop has closed: nobody is waiting any more
            pass

    def run(self) -> None:
        """In the worker thread."""
        if self.cancel.is_set():
            self._back(_settle, self.ready, None, ApiError(499, "cancelled before it started"))
            return
        try:
            prepared = self.prepare()
        except Exception as exc:  # noqa: BLE001 - handed to the request
            self._back(_settle, self.ready, None, exc)
            return
        self._back(_settle, self.ready, prepared, None)
        put = None if self.chunks is None else (lambda chunk: self._back(self.chunks.put_nowait, chunk))
        try:
            result, error = self.execute(prepared, put, self.cancel), None
        except Exception as exc:  # noqa: BLE001 - handed to the request
            result, error = None, exc
        if self.chunks is not None:
            self._back(self.chunks.put_nowait, self.END)
        self._back(_settle, self.done, result, error)


def _settle(fut: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if not fut.done():
        fut.set_exception(error) if error is not None else fut.set_result(value)


class Engine:
    """The model's worker thread and its bounded FIFO queue (see the module docstring)."""

    def __init__(self, generator: Generator, max_queue: int = 32):
        self.generator, self.max_queue = generator, max_queue
        self.jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self.thread: threading.Thread | None = None
        self.served = 0

    def start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._loop, name="knowlm-serve-worker", daemon=True)
            self.thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        if self.thread is None:
            return
        while True:  # drop what still waits, then the sentinel
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            job.cancel.set()
            job.run()
        self.jobs.put(None)
        self.thread.join(timeout)
        self.thread = None

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                job.run()
            finally:
                self.served += 1

    def submit(self, prepare: Callable[[], Any], execute: Callable[..., Any], streaming: bool = False) -> _Job:
        job = _Job(asyncio.get_running_loop(), prepare, execute, streaming)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise ApiError(503, f"server busy: {self.max_queue} requests are already waiting; retry later",
                           "server_busy") from None
        return job

    @staticmethod
    async def wait(fut: asyncio.Future, job: _Job) -> Any:
        try:
            return await fut
        except asyncio.CancelledError:
            job.cancel.set()
            raise
        except ApiError:
            raise
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except Exception as exc:  # noqa: BLE001
            log.exception("generation failed")
            raise ApiError(500, f"internal error: {type(exc).__name__}: {exc}", "server_error") from None


# ============================================================================ request bodies ==
def _models():
    """The pydantic request models (built on first use: importing this module stays cheap)."""
    from pydantic import BaseModel, ConfigDict, Field

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

    class Sampling(Strict):
        max_tokens: int | None = Field(None, ge=1, description="tokens to generate at most (default 256)")
        temperature: float | None = Field(None, ge=0, le=2, description="0: greedy (default); > 0: sampling")
        top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling (acts only when sampling)")
        top_k: int | None = Field(None, ge=-1, description="top-k sampling; -1 or 0: off (acts only when sampling)")
        presence_penalty: float | None = Field(None, ge=-2, le=2)
        frequency_penalty: float | None = Field(None, ge=-2, le=2)
        repetition_penalty: float | None = Field(None, gt=0, le=10)
        num_beams: int | None = Field(None, ge=1, le=8, description="beam search (greedy only)")
        stop: str | list[str] | None = Field(None, description="stop string(s), at most 16")
        seed: int | None = Field(None, ge=0, description="sampling seed (default 0)")
        preset: Literal["ie", "ie-beam", "creative"] | None = Field(None, description="decoding preset to start from")

    class GenerateRequest(Strict):
        instruction: str = Field(min_length=1, description="the task (required)")
        input: str | None = Field(None, description="the text the task is about (optional)")
        parameters: Sampling = Field(default_factory=Sampling)
        template: str | None = Field(None, description="auto (default), none, zh, en or a template name")

    class StreamOptions(Strict):
        include_usage: bool = False

    class CompletionRequest(Sampling):
        model: str | None = None
        prompt: str | list[str]
        stream: bool = False
        stream_options: StreamOptions | None = None
        n: int = 1
        echo: bool = False
        logprobs: int | None = None
        user: str | None = None

    class ChatMessage(Strict):
        role: Literal["system", "user", "assistant"]
        content: str

    class ChatRequest(Sampling):
        model: str | None = None
        messages: list[ChatMessage] = Field(min_length=1)
        stream: bool = False
        stream_options: StreamOptions | None = None
        n: int = 1
        logprobs: bool | None = None
        user: str | None = None
        template: str | None = None

    return GenerateRequest, CompletionRequest, ChatRequest


def api_params(req: Any, settings: ServeSettings) -> GenerationParams:
    """The request's sampling fields (vLLM/OpenAI meaning) as :class:`GenerationParams`: start
    from the request's or the server's preset; temperature 0 is greedy, > 0 samples; top_k -1/0
    is off; max_tokens defaults to ``default_max_tokens`` and may not exceed ``max_tokens_limit``."""
    max_tokens = req.max_tokens if req.max_tokens is not None else settings.default_max_tokens
    if max_tokens > settings.max_tokens_limit:
        raise ApiError(400, f"max_tokens: must be <= {settings.max_tokens_limit} on this server, got {max_tokens}")
    base = preset(req.preset or settings.preset)
    changes: dict[str, Any] = {"max_new_tokens": max_tokens}
    if req.temperature is not None:
        changes["do_sample"] = req.temperature > 0
        changes["temperature"] = req.temperature if req.temperature > 0 else None
    if req.top_p is not None:
        changes["top_p"] = req.top_p
    if req.top_k is not None:
        changes["top_k"] = req.top_k if req.top_k > 0 else None
    sampling = changes.get("do_sample", base.do_sample)
    if not sampling:  # greedy: a preset's sampling values go; the request's own stay (and are reported)
        for key in ("temperature", "top_k", "top_p"):
            changes.setdefault(key, None)
    for key in ("presence_penalty", "frequency_penalty", "repetition_penalty", "num_beams", "seed"):
        if getattr(req, key) is not None:
            changes[key] = getattr(req, key)
    if req.stop is not None:
        changes["stop"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    try:
        return base.replace(**changes)
    except ValueError as exc:
        raise ApiError(400, str(exc).removeprefix("parameters: ")) from None


def _validation_message(errors: list[dict[str, Any]], allowed: Mapping[str, list[str]]) -> str:
    """One line from pydantic's errors: ``parameters.top_p: Input should be less than or equal to 1 (got 3)``."""
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    where = ".".join(loc) or "body"
    if first.get("type") == "json_invalid":
        text = f"invalid JSON body: {first.get('ctx', {}).get('error', first.get('msg'))}"
    elif first.get("type") == "extra_forbidden":
        parent = ".".join(loc[:-1])
        known = allowed.get(parent)
        text = f"{where}: unknown field" + (f" (allowed: {', '.join(known)})" if known else "")
    elif first.get("type") == "missing":
        text = f"{where}: required"
    else:
        got = first.get("input")
        shown = json.dumps(got, ensure_ascii=False)[:60] if isinstance(got, (int, float, str, bool)) else None
        text = f"{where}: {first.get('msg')}" + (f" (got {shown})" if shown is not None else "")
    more = len(errors) - 1
    return text + (f" (+{more} more error{'s' if more > 1 else ''})" if more else "")


# ============================================================================= the ASGI parts ==
class _Guard:
    """Outermost ASGI layer: checks the API key (401), that a body is JSON (415) and reads it up to
    the limit (413 beyond), all without calling the app."""

    def __init__(self, app: Any, settings: ServeSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if self.settings.api_key is not None and path not in OPEN_PATHS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            given = headers.get("x-api-key") or ""
            auth = headers.get("authorization", "")
            if not given and auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.settings.api_key.encode()):
                msg = ("missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'" if not given
                       else "wrong API key")
                return await _send_error(send, path, 401, msg, "authentication_error",
                                         [(b"www-authenticate", b"Bearer")])
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self.settings.max_body_bytes
        ctype = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"content-type"), "")
        mime = ctype.split(";")[0].strip().lower()
        if mime != "application/json" and not mime.endswith("+json"):
            return await _send_error(send, path, 415, f"send the body as JSON with 'Content-Type: application/json' "
                                                      f"(got {ctype or 'no Content-Type'!r})")
        for k, v in scope.get("headers", ()):
            if k.lower() == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    return await _send_error(send, path, 400, "bad Content-Length header")
                if declared > limit:
                    return await _send_error(send, path, 413, f"request body of {declared} bytes is over the "
                                                              f"limit of {limit} bytes")
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await _send_error(send, path, 413, f"request body is over the limit of {limit} bytes")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _error_body(path: str, status: int, message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": kind, "param": None, "code": status}}
    if path == "/generate":
        return {"generated_text": None, "num_output_tokens_cf": 0, "error": message}
    return {"error": message}


async def _send_error(send, path: str, status: int, message: str, kind: str = "invalid_request_error",
                      headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(_error_body(path, status, message, kind), ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


def _sse(obj: Any) -> str:
    return "data: " + (obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)) + "\n\n"


def _openai_finish(g: Generation) -> str:
    return "length" if g.finish_reason == "length" else "stop"


def chat_prompt(messages: list[Any], template: str, prompts: Any) -> tuple[str, Any]:
    """One prompt from a chat: ``system`` text, earlier turns as template(user) + reply, then the
    last user message in the template. Returns ``(prompt, prompter of the last turn)``."""
    system = [m.content for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    if any(m.role == "system" for m in messages[len(system):]):
        raise ValueError("messages: system messages must come first")
    if not turns or turns[-1].role != "user" or any(
            m.role != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(turns)):
        raise ValueError("messages: after the system message(s), user and assistant messages must alternate, "
                         "starting and ending with a user message")
    parts = ["\n".join(system) + "\n\n"] if system else []
    for user, reply in zip(turns[0:-1:2], turns[1::2]):
        text, _ = build_prompt(user.content, "", template, prompts)
        parts.append(text + (("\n" if template == TEMPLATE_NONE else "") + reply.content + "\n\n"))
    last, prompter = build_prompt(turns[-1].content, "", template, prompts)
    return "".join(parts) + last, prompter


def create_app(generator: Generator, settings: ServeSettings | None = None) -> Any:
    """The ASGI application (FastAPI inside :class:`_Guard`); its lifespan starts and stops the worker."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or ServeSettings()
    engine = Engine(generator, settings.max_queue)
    GenerateRequest, CompletionRequest, ChatRequest = _models()
    allowed = {"": sorted(GenerateRequest.model_fields), "parameters": sorted(GenerateRequest.model_fields["parameters"]
                                                                               .annotation.model_fields)}
    allowed_v1 = {"completions": sorted(CompletionRequest.model_fields), "chat": sorted(ChatRequest.model_fields)}

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, engine.stop)

    app = FastAPI(title="KnowLM Course API", version="1", lifespan=lifespan,
                  description="KnowLM's /generate contract and an OpenAI-compatible /v1 API over one model.")
    app.state.engine, app.state.settings = engine, settings

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(_error_body(request.url.path, exc.status, exc.message, exc.kind), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        path = request.url.path
        table = allowed if path == "/generate" else {"": allowed_v1["chat" if "chat" in path else "completions"]}
        return JSONResponse(_error_body(path, 400, _validation_message(list(exc.errors()), table)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return JSONResponse(_error_body(request.url.path, exc.status_code, str(exc.detail)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    def check_prompt(prompt: str) -> int:
        n = generator.codec.count(prompt)
        if generator.context is not None and n >= generator.context:
            raise ValueError(f"the prompt is {n} tokens but the model's context is {generator.context} positions; "
                             "shorten it")
        return n

    @app.get("/is_ready")
    async def is_ready() -> bool:
        """``true`` once the model is loaded and the worker runs (KnowLM's health check)."""
        return engine.thread is not None and engine.thread.is_alive()

    @app.post("/generate")
    async def knowlm_generate(req: GenerateRequest) -> dict:
        """KnowLM's ``/generate``: instruction (+ input) through the prompt template."""
        params = api_params(req.parameters, settings)
        template = req.template or settings.template
        box: dict[str, Any] = {}

        def prepare():
            prompt, box["prompter"] = build_prompt(req.instruction, req.input or "", template, generator.prompts)
            check_prompt(prompt)
            return prompt

        def execute(prompt, put, cancel):
            return generator.complete(prompt, params, cancel=cancel, emit_warnings=False)

        job = engine.submit(prepare, execute)
        await engine.wait(job.ready, job)
        g: Generation = await engine.wait(job.done, job)
        prompter = box.get("prompter")
        text = prompter.response(g.text) if prompter is not None else g.text
        return {"generated_text": text, "num_output_tokens_cf": g.new_tokens, "error": None,
                "finish_reason": g.finish_reason, "num_prompt_tokens": g.prompt_tokens, "warnings": list(g.warnings)}

    def openai_checks(req: Any) -> None:
        if req.n != 1:
            raise ApiError(400, f"n: only 1 choice per request is supported, got {req.n}")
        if req.logprobs not in (None, False, 0):
            raise ApiError(400, "logprobs: not supported")
        if getattr(req, "echo", False):
            raise ApiError(400, "echo: not supported")

    async def respond(req: Any, prompt_fn: Callable[[], tuple[str, Any]], kind: str):
        openai_checks(req)
        params = api_params(req, settings)
        box: dict[str, Any] = {}

        def prepare():
            prompt, box["prompter"] = prompt_fn()
            check_prompt(prompt)
            return prompt

        def execute(prompt, put, cancel):
            return generator.complete(prompt, params, on_text=put, cancel=cancel, emit_warnings=False)

        job = engine.submit(prepare, execute, streaming=req.stream)
        await engine.wait(job.ready, job)
        rid, created = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "created": created, "model": settings.model_name}
        if not req.stream:
            g: Generation = await engine.wait(job.done, job)
            prompter = box.get("prompter")
            text = prompter.response(g.text) if prompter is not None else g.text
            usage = {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.new_tokens,
                     "total_tokens": g.prompt_tokens + g.new_tokens}
            extra = {"warnings": list(g.warnings)} if g.warnings else {}
            if kind == "chat":
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                          "finish_reason": _openai_finish(g)}
                return {**head, "object": "chat.completion", "choices": [choice], "usage": usage, **extra}
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": _openai_finish(g)}
            return {**head, "object": "text_completion", "choices": [choice], "usage": usage, **extra}
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(stream_events(job, head, kind, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def stream_events(job: _Job, head: dict, kind: str, include_usage: bool) -> AsyncIterator[str]:
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(text: str | None, finish: str | None, first: bool = False) -> dict:
            if kind == "chat":
                delta = {"role": "assistant", "content": ""} if first else ({} if text is None else {"content": text})
                return {**head, "object": obj, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                            "finish_reason": finish}]}
            return {**head, "object": obj, "choices": [{"index": 0, "text": text or "", "logprobs": None,
                                                        "finish_reason": finish}]}
        try:
            if kind == "chat":
                yield _sse(chunk(None, None, first=True))
            while (piece := await job.chunks.get()) is not _Job.END:
                yield _sse(chunk(piece, None))
            try:
                g: Generation = await engine.wait(job.done, job)
            except ApiError as exc:
                yield _sse({"error": {"message": exc.message, "type": exc.kind, "param": None, "code": exc.status}})
            else:
                yield _sse(chunk(None, _openai_finish(g)))
                if include_usage:
                    yield _sse({**head, "object": obj, "choices": [],
                                "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.new_tokens,
                                          "total_tokens": g.prompt_tokens + g.new_tokens}})
            yield _sse("[DONE]")
        finally:
            job.cancel.set()  # a client that left: stop generating after the current token

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        """OpenAI completions: the prompt is continued as it is (no template)."""
        if isinstance(req.prompt, list):
            if len(req.prompt) != 1:
                raise ApiError(400, f"prompt: one prompt per request is supported, got a list of {len(req.prompt)}")
            text = req.prompt[0]
        else:
            text = req.prompt
        if not text:
            raise ApiError(400, "prompt: must not be empty")
        return await respond(req, lambda: (text, None), "completions")

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest):
        """OpenAI chat: the messages become one prompt through the run's template (``template``)."""
        template = req.template or settings.template
        return await respond(req, lambda: chat_prompt(req.messages, template, generator.prompts), "chat")

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "created": 0,
                                            "owned_by": "knowlm-course"}]}

    return _Guard(app, settings)


# ================================================================================== running it ==
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket bound to ``host:port`` (port 0: a free one; read it back with
    ``getsockname()``), for uvicorn's ``sockets=``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(2048)  # connections made before uvicorn starts wait in the backlog
    sock.set_inheritable(True)
    return sock


def _uvicorn_server(app: Any, settings: ServeSettings, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on",
                            limit_concurrency=settings.max_queue + 32, timeout_keep_alive=5,
                            timeout_graceful_shutdown=10, server_header=False)
    return uvicorn.Server(config)


class ServerThread:
    """Serve ``app`` from a background thread: ``with ServerThread(app) as url: ...`` (tests,
    benchmarks, a notebook). Binds ``host`` (default 127.0.0.1) on ``port`` (default 0: a free one)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 settings: ServeSettings | None = None):
        self.settings = dataclasses.replace(settings or ServeSettings(), host=host, port=port)
        self.server = _uvicorn_server(app, self.settings, log_level)
        self.sock = bind_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="knowlm-serve-http", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def _read_api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_file is not None:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"--api-key-file {args.api_key_file}: cannot read ({exc.strerror or exc})") from None
        if not key:
            raise ValueError(f"--api-key-file {args.api_key_file}: empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def _cli_serve(args: argparse.Namespace) -> int:
    settings = ServeSettings(host=args.host, port=args.port, api_key=_read_api_key(args),
                             max_body_bytes=args.max_body_kb * 1024, max_tokens_limit=args.max_tokens_limit,
                             default_max_tokens=args.default_max_tokens, max_queue=args.max_queue, preset=args.preset,
                             template=args.template, model_name=args.model_name or Path(args.model).name)
    sock = bind_socket(settings.host, settings.port)  # fail fast (port in use) before loading the model
    if settings.host not in ("127.0.0.1", "::1", "localhost") and settings.api_key is None:
        print(f"knowlm serve: warning: listening on {settings.host} without an API key: anyone who can reach this "
              f"machine can use the model (set {API_KEY_ENV} or --api-key-file)", file=sys.stderr)
    try:
        gen = generator_from_args(args, settings.preset, [settings.template])
    except BaseException:
        sock.close()
        raise
    app = create_app(gen, settings)
    port = sock.getsockname()[1]
    print(f"serving {gen.name} on http://{settings.host}:{port} (POST /generate, /v1/completions, "
          f"/v1/chat/completions; GET /is_ready; one worker, up to {settings.max_queue} queued; "
          f"API key {'required' if settings.api_key else 'off'})", flush=True)
    try:
        _uvicorn_server(app, settings, args.log_level).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down gracefully, then re-raised Ctrl-C
        pass
    return 0


def add_cli(subparsers) -> None:
    """``knowlm serve --model M [--adapter A] [--host 127.0.0.1] [--port 8000]``."""
    p = subparsers.add_parser("serve", help="HTTP API: KnowLM's /generate + /is_ready, OpenAI /v1 completions (SSE)",
                              description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    add_model_arguments(p)
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="TCP port (0: a free one, printed)")
    s.add_argument("--api-key-file", default=None,
                   help=f"file holding the API key clients must send (default: ${API_KEY_ENV} if set, else none)")
    s.add_argument("--max-tokens-limit", type=int, default=1024, help="largest max_tokens a request may ask for")
    s.add_argument("--default-max-tokens", type=int, default=256, help="max_tokens when a request gives none")
    s.add_argument("--max-body-kb", type=int, default=64, help="largest request body in KiB (413 beyond)")
    s.add_argument("--max-queue", type=int, default=32, help="requests that may wait beside the running one (503 "
                                                             "beyond)")
    s.add_argument("--preset", choices=list(PRESETS), default="ie", help="decoding requests start from (default ie: "
                                                                         "greedy)")
    s.add_argument("--template", default=TEMPLATE_AUTO, help="prompt template when a request names none (auto, none, "
                                                             "zh, en, a name)")
    s.add_argument("--model-name", default=None, help="model id in OpenAI responses (default: the model folder's name)")
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=_cli_serve)


__all__ = ["ServeSettings", "ApiError", "Engine", "create_app", "api_params", "chat_prompt", "ServerThread",
           "bind_socket", "add_cli", "API_KEY_ENV"]
