"""Generator backends: helpers and vLLM (in process and over HTTP) plus
transformers on the tiny random Llama; one slow test on SmolLM2."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeGenerator

from pipeline.errors import (
    ConfigError,
    ContextBudgetError,
    GeneratorUnavailableError,
    ModelNotFoundError,
)
from pipeline.generators import BACKENDS, make_generator
from pipeline.generators.base import cut_at_stop, fit_max_tokens, vllm_env
from pipeline.protocols import Generator, Tokenizer
from pipeline.types import GenerationParams

PROMPTS = [
    "The capital of France is",
    "Water boils at",
    "A citation tells the reader",
    "hello",
    "Question: Who wrote the report? Answer:",
]


# --------------------------------------------------------------------------- light parts
def test_import_is_light() -> None:
    code = (
        "import sys, pipeline.generators, pipeline.generators.base, "
        "pipeline.generators.server, pipeline.generators.openai_http\n"
        "heavy = [m for m in ('torch', 'vllm', 'transformers', 'httpx') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_make_generator_unknown_backend_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        make_generator("llamacpp", None)
    for name in BACKENDS:
        assert name in str(err.value)


def test_make_generator_openai_needs_url() -> None:
    with pytest.raises(ConfigError, match="--llm-url"):
        make_generator("openai", None)


def test_fake_is_not_a_production_backend() -> None:
    # The canned-reply generator lives in tests/fakes.py; tests pass it in, users cannot pick it.
    assert "fake" not in BACKENDS
    with pytest.raises(ConfigError, match="valid backends: vllm, openai, transformers$"):
        make_generator("fake", None)


def test_cut_at_stop_takes_earliest() -> None:
    assert cut_at_stop("abc. def\nghi", ("\n", ".")) == ("abc", True)
    assert cut_at_stop("abc", ("x", "")) == ("abc", False)


def test_fit_max_tokens() -> None:
    assert fit_max_tokens(10, 5, 100) == 5
    assert fit_max_tokens(98, 5, 100) == 2
    with pytest.raises(ContextBudgetError, match="prompt 3"):
        fit_max_tokens(100, 5, 100, index=3)


def test_vllm_env_keeps_user_values(tmp_path: Path) -> None:
    env = {"VLLM_CPU_KVCACHE_SPACE": "4"}
    vllm_env(str(tmp_path), environ=env)
    assert env["HF_HUB_OFFLINE"] == "1"  # a local folder needs no hub
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"  # stdout is the CLI's
    if "VLLM_TARGET_DEVICE" in env:  # vllm-cpu installed
        assert env["VLLM_CPU_KVCACHE_SPACE"] == "4"
        assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    env2: dict[str, str] = {}
    vllm_env("org/some-hub-model", environ=env2)
    assert "HF_HUB_OFFLINE" not in env2


def test_normalize_base_url() -> None:
    from pipeline.generators.openai_http import normalize_base_url

    assert normalize_base_url("localhost:8000") == "http://localhost:8000"
    assert normalize_base_url("http://h:1/v1/") == "http://h:1"
    with pytest.raises(ConfigError):
        normalize_base_url(" ")


def test_openai_generator_closed_port_fails_fast() -> None:
    from pipeline.generators.openai_http import OpenAIGenerator
    from pipeline.generators.server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    gen = OpenAIGenerator(url, timeout=30)
    assert gen.health() is False
    t0 = time.monotonic()
    with pytest.raises(GeneratorUnavailableError) as err:
        gen.generate(["hi"], GenerationParams(max_tokens=4))
    assert time.monotonic() - t0 < 5
    assert url in str(err.value)
    assert "citerag llm serve" in str(err.value)
    with pytest.raises(GeneratorUnavailableError):
        gen.score(["a"], ["b"])


@pytest.mark.parametrize("cut_after", [None, 3])
def test_a_stream_cut_short_is_an_error_not_a_shorter_answer(cut_after: int | None) -> None:
    """A stream that ends cleanly with neither a finish reason nor [DONE] (a dying server or
    proxy) used to come back as a complete, shorter answer."""
    import threading

    from fake_llm_server import ANSWER, FakeServer

    from pipeline.generators.openai_http import OpenAIGenerator
    from pipeline.generators.server import free_port

    srv = FakeServer(free_port(), delay=0.0, piece_delay=0.0, cut_after=cut_after)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        gen = OpenAIGenerator(f"http://127.0.0.1:{srv.server_address[1]}", timeout=30)
        got: list[str] = []
        if cut_after is None:
            pieces = list(gen.stream("hi", GenerationParams(max_tokens=64)))
            assert "".join(p.text for p in pieces) == ANSWER and pieces[-1].finish_reason == "stop"
        else:
            with pytest.raises(GeneratorUnavailableError, match="closed the stream before the answer ended"):
                for piece in gen.stream("hi", GenerationParams(max_tokens=64)):
                    got.append(piece.text)
            assert "".join(got) == " ".join(ANSWER.split(" ")[:cut_after])
    finally:
        srv.shutdown()
        srv.server_close()


def test_make_generator_openai_is_lazy() -> None:
    from pipeline.generators.openai_http import OpenAIGenerator

    gen = make_generator("openai", "smollm2-135m-instruct", llm_url="http://127.0.0.1:9/v1")
    assert isinstance(gen, OpenAIGenerator)
    assert gen.base_url == "http://127.0.0.1:9"


def test_regex_reaches_vllm_sampling_params() -> None:
    pytest.importorskip("vllm")
    from pipeline.generators.base import vllm_sampling

    sp = vllm_sampling(GenerationParams(regex="(?:ab)+"), 8)
    assert sp.structured_outputs is not None and sp.structured_outputs.regex == "(?:ab)+"
    assert vllm_sampling(GenerationParams(), 8).structured_outputs is None


def test_regex_in_the_openai_request_body(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.generators.openai_http import OpenAIGenerator

    gen = OpenAIGenerator("http://127.0.0.1:9", "m")
    monkeypatch.setattr(gen, "_discover", lambda: {"id": "m", "owned_by": "vllm"})
    body = gen._completion_body([[1, 2]], 8, GenerationParams(regex="a+"))
    assert body["structured_outputs"] == {"regex": "a+"}
    assert gen.supports_regex  # citations "auto" -> constrained
    assert "structured_outputs" not in gen._completion_body([[1, 2]], 8, GenerationParams())
    monkeypatch.setattr(gen, "_discover", lambda: {"id": "m", "owned_by": "someone-else"})
    assert not gen.supports_regex  # citations "auto" -> post hoc
    with pytest.raises(ConfigError, match="not a vLLM server"):
        gen._completion_body([[1, 2]], 8, GenerationParams(regex="a+"))


def test_bad_regex_params_are_rejected() -> None:
    from pipeline.generators.base import check_params

    for bad in ("", "a\x00b"):
        with pytest.raises(ConfigError, match="regex"):
            check_params(GenerationParams(regex=bad))
    with pytest.raises(ConfigError, match="use --backend vllm or --llm-url"):
        FakeGenerator().generate(["p"], GenerationParams(regex="a"))


# --------------------------------------------------------------------------- tiny model
@pytest.fixture(scope="session")
def tiny_hf(tiny_model_dir: Path) -> Any:
    from pipeline.generators.hf import TransformersGenerator

    return TransformersGenerator(str(tiny_model_dir), batch_size=4)


@pytest.fixture(scope="session")
def tiny_http(tiny_vllm_server: Any) -> Any:
    from pipeline.generators.openai_http import OpenAIGenerator

    gen = OpenAIGenerator(tiny_vllm_server.url, timeout=60)
    yield gen
    gen.close()


@pytest.fixture(params=["vllm", "http", "transformers"])
def tiny_gen(request: pytest.FixtureRequest) -> Any:
    """The tiny model behind each backend."""
    return request.getfixturevalue({"vllm": "tiny_vllm", "http": "tiny_http", "transformers": "tiny_hf"}[request.param])


def test_make_generator_transformers_takes_engine_options(tiny_model_dir: Path) -> None:
    from pipeline.generators.hf import TransformersGenerator

    gen = make_generator("transformers", str(tiny_model_dir), dtype="float32", max_model_len=512, seed=0)
    assert isinstance(gen, TransformersGenerator)
    assert gen.max_context == 512
    assert gen.hf_tokenizer is not None and gen.model is not None


def test_hf_tokenizer(tiny_model_dir: Path) -> None:
    from pipeline.generators.base import HFTokenizer

    tok = HFTokenizer.from_pretrained(str(tiny_model_dir))
    assert isinstance(tok, Tokenizer)
    ids = tok.encode("The capital of France")
    assert ids and tok.decode(ids) == "The capital of France"
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tok.encode(chat)) == chat
    assert tok.encode("<|im_end|>") == [tok.eos_token_id]
    tok.hf.chat_template = None
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) is None
    with pytest.raises(ModelNotFoundError):
        HFTokenizer.from_pretrained(str(tiny_model_dir / "missing"))


def test_generator_protocol_and_context(tiny_gen: Any) -> None:
    assert isinstance(tiny_gen, Generator)
    assert tiny_gen.max_context == 2048
    assert tiny_gen.generate([], GenerationParams()) == []


def test_batched_generate_keeps_order(tiny_gen: Any) -> None:
    params = GenerationParams(max_tokens=12)
    batched = tiny_gen.generate(PROMPTS, params)
    assert len(batched) == len(PROMPTS)
    singles = [tiny_gen.generate([p], params)[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in singles]
    assert len({g.text for g in batched}) > 1


def test_greedy_is_deterministic(tiny_gen: Any) -> None:
    params = GenerationParams(max_tokens=16)
    a = tiny_gen.generate(PROMPTS, params)
    b = tiny_gen.generate(PROMPTS, params)
    assert [(g.text, g.token_ids) for g in a] == [(g.text, g.token_ids) for g in b]


def test_max_tokens_respected(tiny_gen: Any) -> None:
    for n in (1, 7):
        for g in tiny_gen.generate(PROMPTS, GenerationParams(max_tokens=n)):
            assert len(g.token_ids) <= n
            if g.finish_reason == "length":
                assert len(g.token_ids) == n


def _ascii_stop(text: str) -> str | None:
    """A two-character ASCII-letter stop string found after the first 3 characters."""
    for i in range(3, len(text) - 1):
        piece = text[i : i + 2]
        if piece.isascii() and piece.isalpha():
            return piece
    return None


def test_stop_strings_respected(tiny_gen: Any) -> None:
    full = tiny_gen.generate(PROMPTS, GenerationParams(max_tokens=24))
    checked = 0
    for prompt, g in zip(PROMPTS, full):
        stop = _ascii_stop(g.text)
        if stop is None:
            continue
        cut = tiny_gen.generate([prompt], GenerationParams(max_tokens=24, stop=(stop, "\x00never")))[0]
        assert cut.text == g.text[: g.text.find(stop)]
        assert cut.finish_reason == "stop"
        checked += 1
    assert checked >= 2


def test_regex_constrains_vllm_backends_and_transformers_refuses(tiny_gen: Any) -> None:
    import re

    from pipeline.generators.hf import TransformersGenerator

    rx = "(?:[a-z]{1,5} ){1,3}\\[[1-3]\\]\\."
    params = GenerationParams(max_tokens=24, regex=rx)
    if isinstance(tiny_gen, TransformersGenerator):
        with pytest.raises(ConfigError, match="constrained citations need a vLLM backend"):
            tiny_gen.generate(PROMPTS, params)
        return
    outs = tiny_gen.generate(PROMPTS, params)
    free = tiny_gen.generate(PROMPTS, GenerationParams(max_tokens=24))
    assert all(re.fullmatch(rx, g.text) and g.finish_reason == "stop" for g in outs), [g.text for g in outs]
    assert not any(re.fullmatch(rx, g.text) for g in free)  # the random model never writes this unasked


def test_score_shape(tiny_gen: Any) -> None:
    out = tiny_gen.score(["The capital of France is", "x", "y"], [" Paris.", " water boils", ""])
    tok = tiny_gen.tokenizer
    assert [len(r) for r in out] == [len(tok.encode(" Paris.")), len(tok.encode(" water boils")), 0]
    assert all(v <= 0 for r in out for v in r)


def test_score_agrees_across_backends(tiny_vllm: Any, tiny_http: Any, tiny_hf: Any) -> None:
    prompts = ["The capital of France is", "Water boils at", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"]
    conts = [" Paris, a large city on the river Seine.", " one hundred degrees Celsius", "Hello! How can I help?"]
    ref = tiny_hf.score(prompts, conts)
    for other in (tiny_vllm.score(prompts, conts), tiny_http.score(prompts, conts)):
        assert [len(r) for r in other] == [len(r) for r in ref]
        for r_row, o_row in zip(ref, other):
            assert max(abs(a - b) for a, b in zip(r_row, o_row)) < 1e-3


def test_vllm_in_process_and_server_generate_the_same(tiny_vllm: Any, tiny_http: Any) -> None:
    params = GenerationParams(max_tokens=16)
    a = tiny_vllm.generate(PROMPTS, params)
    b = tiny_http.generate(PROMPTS, params)
    assert [(g.text, g.token_ids, g.finish_reason) for g in a] == [(g.text, g.token_ids, g.finish_reason) for g in b]


def test_generate_clamps_to_context(tiny_vllm: Any) -> None:
    tok = tiny_vllm.tokenizer
    per = len(tok.encode("hello " * 100)) / 100
    long_prompt = "hello " * int(2040 / per)  # a few tokens short of the 2048 window
    n = len(tok.encode_prompt(long_prompt))
    assert 2000 < n < 2048
    g = tiny_vllm.generate([long_prompt], GenerationParams(max_tokens=64))[0]
    assert len(g.token_ids) <= 2048 - n
    with pytest.raises(ContextBudgetError):
        tiny_vllm.generate([long_prompt * 2], GenerationParams(max_tokens=4))


def test_openai_generator_discovers_server(tiny_http: Any, tiny_model_dir: Path, tiny_vllm_server: Any) -> None:
    from pipeline.generators.base import HFTokenizer

    assert tiny_http.health() is True
    assert tiny_http.model == str(tiny_model_dir.resolve())
    assert tiny_http.is_vllm
    assert isinstance(tiny_http.tokenizer, HFTokenizer)  # loaded from the served path


def test_remote_tokenizer_matches_local(tiny_http: Any) -> None:
    from pipeline.generators.openai_http import RemoteTokenizer

    local, remote = tiny_http.tokenizer, RemoteTokenizer(tiny_http)
    text = "The capital of France is Paris [1]."
    assert remote.encode(text) == local.encode(text)
    assert remote.encode_prompt(text) == local.encode_prompt(text)
    assert remote.decode(local.encode(text)) == text
    msgs = [{"role": "user", "content": "hi"}]
    assert remote.apply_chat_template(msgs) == local.apply_chat_template(msgs)


def test_openai_generator_unknown_model(tiny_vllm_server: Any) -> None:
    from pipeline.generators.openai_http import OpenAIGenerator

    with OpenAIGenerator(tiny_vllm_server.url, "no-such-model") as gen:
        with pytest.raises(ModelNotFoundError, match="no-such-model"):
            gen.generate(["hi"], GenerationParams(max_tokens=2))


def test_server_that_dies_fails_fast(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    from pipeline.generators.server import start_vllm_server

    handle = start_vllm_server(str(tiny_model_dir), extra_args=("--no-such-flag",), log_file=tmp_path / "s.log")
    t0 = time.monotonic()
    with handle, pytest.raises(GeneratorUnavailableError) as err:
        handle.wait_healthy(timeout=120)
    assert time.monotonic() - t0 < 90
    assert "exited with code" in str(err.value)
    assert "no-such-flag" in str(err.value)  # the tail of the log is in the message


def test_start_server_missing_model(tmp_path: Path) -> None:
    from pipeline.generators.server import start_vllm_server

    with pytest.raises(ModelNotFoundError):
        start_vllm_server(str(tmp_path / "nope"))


# --------------------------------------------------------------------------- SmolLM2
@pytest.mark.slow
def test_smollm2_vllm_knows_paris(smollm2_dir: str) -> None:
    pytest.importorskip("vllm")
    from pipeline.generators.vllm_local import VLLMGenerator

    with VLLMGenerator(smollm2_dir) as gen:
        prompt = gen.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
        assert prompt is not None and prompt.endswith("<|im_start|>assistant\n")
        out = gen.generate([prompt], GenerationParams(max_tokens=48))[0]
    assert "Paris" in out.text


def test_closing_one_engine_leaves_another_in_process_engine_working(tiny_vllm: Any, tiny_model_dir: Path) -> None:
    """EngineCore.shutdown tears down vLLM's process-global parallel groups; a second
    in-process engine closing must not break the first one."""
    from pipeline.generators.vllm_local import VLLMGenerator

    params = GenerationParams(max_tokens=4)
    before = tiny_vllm.generate(["hello world"], params)[0].text
    with VLLMGenerator(str(tiny_model_dir), max_model_len=512) as other:
        assert other.generate(["hello world"], params)[0].text == before
    assert tiny_vllm.generate(["hello world"], params)[0].text == before
