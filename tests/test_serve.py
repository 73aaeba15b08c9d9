"""knowlm_utils.serve over real HTTP: uvicorn serving a real tiny LLaMA on a free port of
127.0.0.1 (in a thread, and once as the ``knowlm serve`` command in a subprocess)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import pytest

from conftest import ROOT, assert_one_line_error, run_cli, save_release_model
from generation_helpers import byte_ids, scripted_llama
from knowlm_utils.generation import Generator
from knowlm_utils.serve import ServerThread, ServeSettings, create_app

SETTINGS = dict(max_tokens_limit=512, default_max_tokens=256)


def request(url: str, path: str, body=None, *, method: str | None = None, raw: bytes | None = None,
            headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    data = raw if raw is not None else (None if body is None else json.dumps(body, ensure_ascii=False).encode())
    conn.request(method or ("GET" if data is None else "POST"), path, body=data,
                 headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload


def post(url: str, path: str, body=None, **kw) -> tuple[int, object]:
    status, _, payload = request(url, path, body, **kw)
    return status, json.loads(payload)


def events(payload: bytes) -> list[str]:
    """The ``data:`` payloads of a server-sent event stream, checking its framing."""
    text = payload.decode("utf-8")
    assert text.endswith("\n\n")
    blocks = text[:-2].split("\n\n")
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), blocks
    return [b[len("data: "):] for b in blocks]


@pytest.fixture(scope="module")
def gen(model, sp):
    return Generator(model, sp)


@pytest.fixture(scope="module")
def url(gen):
    with ServerThread(create_app(gen, ServeSettings(**SETTINGS))) as u:
        yield u


@pytest.fixture(scope="module")
def bei(sp, sp_model_path):
    """A Generator whose model writes 北 forever (never </s>)."""
    return Generator(scripted_llama(sp_model_path, byte_ids(sp, "北")), sp)


# ------------------------------------------------------------------------- KnowLM contract ----
def test_knowlm_generate_contract_and_defaults(url, gen, bei):
    assert request(url, "/is_ready")[2] == b"true"
    body = {"instruction": "找出下面句子中的实体", "input": "巴西利亚是巴西的首都。",
            "parameters": {"top_p": 0.9, "top_k": 40, "max_tokens": 12, "temperature": 0.5, "presence_penalty": 0.0,
                           "frequency_penalty": 0.0}}  # exactly what KnowLM's client posts
    status, out = post(url, "/generate", body)
    assert status == 200 and out["error"] is None and set(out) >= {"generated_text", "num_output_tokens_cf", "error"}
    assert 1 <= out["num_output_tokens_cf"] <= 12 and out["warnings"] == []
    assert post(url, "/generate", body)[1] == out  # seeded sampling: the same answer again
    status, greedy = post(url, "/generate", {"instruction": "Name a city.", "parameters": {"top_p": 0.5, "max_tokens": 8}})
    want = gen.instruct("Name a city.", max_new_tokens=8)
    assert greedy["generated_text"] == want.text and greedy["num_output_tokens_cf"] == want.new_tokens
    assert greedy["warnings"] == ["top_p=0.5 ignored: greedy decoding (do_sample is off); turn sampling on "
                                  "(do_sample=true, preset creative, or a temperature > 0 in the HTTP API) for them to act"]
    with ServerThread(create_app(bei, ServeSettings(**SETTINGS))) as loop_url:
        status, out = post(loop_url, "/generate", {"instruction": "写一首诗"})  # no parameters at all
    assert status == 200 and out["num_output_tokens_cf"] == 256 and out["finish_reason"] == "length"
    assert out["generated_text"] == "北" * 85  # 256 tokens: 85 whole characters, the cut one dropped


BAD = [
    ("/generate", {}, 400, "instruction: required"),
    ("/generate", {"instruction": ""}, 400, "instruction: String should have at least 1 character"),
    ("/generate", {"instruction": "x", "parameters": {"top_p": 3}}, 400,
     "parameters.top_p: Input should be less than or equal to 1 (got 3)"),
    ("/generate", {"instruction": "x", "parameters": {"max_tokens": "10"}}, 400,
     "parameters.max_tokens: Input should be a valid integer"),
    ("/generate", {"instruction": "x", "parameters": {"max_tokens": 5000}}, 400,
     "max_tokens: must be <= 512 on this server, got 5000"),
    ("/generate", {"instruction": "x", "parameters": {"temperature": -1}}, 400,
     "parameters.temperature: Input should be greater than or equal to 0"),
    ("/generate", {"instruction": "x", "colour": 1}, 400,
     "colour: unknown field (allowed: input, instruction, parameters, template)"),
    ("/generate", {"instruction": "x", "parameters": {"temperature": 0.5, "num_beams": 2}}, 400,
     "num_beams=2 with do_sample"),
    ("/generate", {"instruction": "x", "parameters": {"stop": ["a"] * 17}}, 400, "stop: at most 16 stop strings"),
    ("/generate", {"instruction": "x", "template": "../../etc/passwd"}, 400, "template '../../etc/passwd': unknown"),
    ("/generate", b'{"instruction": ', 400, "invalid JSON body"),
    ("/generate", {"instruction": "长" * 30000}, 413, "over the limit of 65536 bytes"),
    ("/v1/completions", {"prompt": "北" * 20000}, 400, "the model's context is 2048 positions"),
    ("/v1/completions", {"prompt": "x", "n": 2}, 400, "n: only 1 choice per request is supported"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {}}, 400, "logit_bias: unknown field"),
    ("/v1/completions", {"prompt": ["a", "b"]}, 400, "one prompt per request"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages: List should have at least 1 item"),
    ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "hi"}]}, 400,
     "user and assistant messages must alternate"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role: Input should be"),
    ("/nowhere", None, 404, "Not Found"),
]


@pytest.mark.parametrize("path, body, status, needle", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_requests_get_4xx_with_a_one_line_message(url, path, body, status, needle):
    got, headers, payload = request(url, path, None if isinstance(body, bytes) else body,
                                    raw=body if isinstance(body, bytes) else None)
    out = json.loads(payload)
    assert got == status and headers["content-type"].startswith("application/json")
    message = out["error"]["message"] if path.startswith("/v1/") else out["error"]
    assert needle in message and "\n" not in message, message
    if path == "/generate":
        assert out["generated_text"] is None and out["num_output_tokens_cf"] == 0


def test_method_not_allowed_and_not_json(url):
    status, out = post(url, "/generate", method="GET")
    assert status == 405 and out["error"] == "Method Not Allowed"
    status, out = post(url, "/generate", raw=b"instruction=hi", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and out["error"].startswith("send the body as JSON with 'Content-Type: application/json'")
    status, out = post(url, "/v1/completions", raw=b'{"prompt": "a", "max_tokens": 1}',
                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200 and out["usage"]["completion_tokens"] == 1


# ------------------------------------------------------------------------------ OpenAI /v1 ----
def test_completions_and_sse_stream_framing(url, gen):
    body = {"model": "anything", "prompt": "Amsterdam is a city in", "max_tokens": 10}
    status, out = post(url, "/v1/completions", body)
    want = gen.complete("Amsterdam is a city in", max_new_tokens=10)
    assert status == 200 and out["object"] == "text_completion" and out["choices"][0]["text"] == want.text
    assert out["usage"] == {"prompt_tokens": want.prompt_tokens, "completion_tokens": want.new_tokens,
                            "total_tokens": want.prompt_tokens + want.new_tokens}
    assert out["choices"][0]["finish_reason"] == ("length" if want.finish_reason == "length" else "stop")
    status, headers, payload = request(url, "/v1/completions", {**body, "stream": True,
                                                                "stream_options": {"include_usage": True}})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    data = events(payload)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert len(texts) >= 4 and "".join(texts) == want.text  # token by token, joined: the same text
    assert all(c["id"] == chunks[0]["id"] and c["object"] == "text_completion" for c in chunks)
    finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finals[:-1] == [None] * (len(finals) - 1) and finals[-1] == out["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == out["usage"]


def test_chat_completions_and_stream(url, gen):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a city."},
                {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "Another one?"}]
    status, out = post(url, "/v1/chat/completions", {"messages": messages, "max_tokens": 8})
    assert status == 200 and out["object"] == "chat.completion"
    msg = out["choices"][0]["message"]
    prompt = gen.prompt_for("Name a city.")[0] + "Paris.\n\n" + gen.prompt_for("Another one?")[0]
    want = gen.complete("You are terse.\n\n" + prompt, max_new_tokens=8)
    assert msg == {"role": "assistant", "content": want.text.strip()} and out["usage"]["prompt_tokens"] == \
        want.prompt_tokens
    status, headers, payload = request(url, "/v1/chat/completions", {"messages": messages, "max_tokens": 8,
                                                                     "stream": True})
    data = events(payload)
    chunks = [json.loads(d) for d in data[:-1]]
    assert data[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:]]
    assert "".join(deltas) == want.text and chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert post(url, "/v1/models")[1]["data"][0]["id"] == "knowlm"


# ---------------------------------------------------------------------------- concurrency ----
def test_eight_parallel_clients_get_the_sequential_outputs(url):
    jobs = []
    for i in range(24):
        if i % 3 == 0:
            jobs.append(("/generate", {"instruction": f"第{i}个问题：北京在哪里？", "parameters": {"max_tokens": 6}}))
        elif i % 3 == 1:
            jobs.append(("/v1/completions", {"prompt": f"City number {i} is", "max_tokens": 6, "temperature": 0.9,
                                             "seed": i}))
        else:
            jobs.append(("/v1/chat/completions", {"messages": [{"role": "user", "content": f"Say {i}"}],
                                                  "max_tokens": 6}))

    def one(job):
        status, out = post(url, *job)
        assert status == 200, out
        out.pop("id", None)
        out.pop("created", None)
        return out

    sequential = [one(j) for j in jobs]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(one, jobs))
    assert parallel == sequential
    assert len({json.dumps(o, sort_keys=True) for o in sequential}) >= 10  # really different requests


def test_a_full_queue_answers_503(sp, sp_model_path):
    """One request runs (held inside its first forward pass), one waits, the rest get 503 at once;
    the held one and the waiting one both finish once released. No timing luck involved."""
    model = scripted_llama(sp_model_path, byte_ids(sp, "北"))
    generator = Generator(model, sp)
    running, release = threading.Event(), threading.Event()

    def hold_the_worker(*_):
        running.set()
        assert release.wait(60), "the test never released the worker"

    model.register_forward_pre_hook(hold_the_worker)
    body = {"instruction": "x", "parameters": {"max_tokens": 6}}  # 北 is three byte tokens
    with ServerThread(create_app(generator, ServeSettings(max_queue=1, max_tokens_limit=2000))) as u, \
            ThreadPoolExecutor(5) as pool:
        first = pool.submit(post, u, "/generate", body)
        assert running.wait(60), "the first request never reached the model"
        others = [pool.submit(post, u, "/generate", body) for _ in range(4)]
        answered = []
        while len(answered) < 3:  # three are refused while the first runs and one waits
            done, _ = wait(set(others) - set(answered), timeout=60, return_when=FIRST_COMPLETED)
            assert done, "no answer within 60 s"
            answered += done
        refused = [f.result() for f in answered]
        waiting = next(f for f in others if f not in answered)
        assert not waiting.done()
        release.set()
        served = [first.result(60), waiting.result(60)]
    assert [s for s, _ in refused] == [503] * 3, refused
    assert all(out == {"generated_text": None, "num_output_tokens_cf": 0, "error":
                       "server busy: 1 requests are already waiting; retry later"} for _, out in refused), refused
    assert [(s, out["generated_text"]) for s, out in served] == [(200, "北北")] * 2, served


def test_api_key(gen):
    with ServerThread(create_app(gen, ServeSettings(api_key="s3cret", **SETTINGS))) as u:
        body = {"instruction": "hi", "parameters": {"max_tokens": 2}}
        assert request(u, "/is_ready")[0] == 200  # the health check stays open
        status, headers, payload = request(u, "/generate", body)
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert json.loads(payload)["error"].startswith("missing API key: send 'Authorization: Bearer KEY'")
        assert post(u, "/generate", body, headers={"Authorization": "Bearer nope"}) == (
            401, {"generated_text": None, "num_output_tokens_cf": 0, "error": "wrong API key"})
        assert post(u, "/v1/models", headers={"Authorization": "Bearer wrong"})[1]["error"]["message"] == "wrong API key"
        assert post(u, "/generate", body, headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert post(u, "/generate", body, headers={"X-API-Key": "s3cret"})[0] == 200


# ------------------------------------------------------------------------------ the command ----
def test_knowlm_serve_command(sp, sp_model_path, hf_tokenizer_dir, tmp_path, capsys):
    writer = scripted_llama(sp_model_path, [*sp.encode("北京"), sp.eos_id()], loop=False)
    model_dir = save_release_model(writer, tmp_path / "writer", hf_tokenizer_dir)
    capsys.readouterr()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    rc, _, err = run_cli(capsys, "serve", "--model", model_dir, "--port", busy.getsockname()[1])
    busy.close()
    assert_one_line_error(rc, err, "cannot bind 127.0.0.1:", "in use", command="serve")
    rc, _, err = run_cli(capsys, "serve", "--model", model_dir, "--port", "0", "--template", "klingon")
    assert_one_line_error(rc, err, "template 'klingon': unknown", command="serve")

    env = {**os.environ, "KNOWLM_API_KEY": "k3y", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "knowlm_utils.cli", "serve", "--model", str(model_dir), "--port", "0",
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert "on http://127.0.0.1:" in line and "API key required" in line, (line, proc.stderr.read()
                                                                                if proc.poll() is not None else "")
        base = line.split(" on ")[1].split()[0]
        assert request(base, "/is_ready")[2] == b"true"
        assert post(base, "/generate", {"instruction": "首都？"})[0] == 401
        status, out = post(base, "/generate", {"instruction": "首都？"}, headers={"Authorization": "Bearer k3y"})
        assert status == 200 and out["generated_text"] == "北京" and out["finish_reason"] == "eos"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a graceful stop
        proc.wait(30)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr.read()
