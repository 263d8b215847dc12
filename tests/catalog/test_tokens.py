"""Token counting: exact against tiktoken where the shared BPE files are present, estimates otherwise, and
never a network attempt, whatever the cache holds."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import logging
import shutil
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public as openai_public
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelplex.catalog import tokens
from modelplex.catalog.schema import ModelSpec
from modelplex.catalog.tokens import (
    count_messages,
    count_text,
    encoding_for,
    encoding_name_for,
    estimate_combined_size,
    family_of,
)
from modelplex.types import TokenCount

O200K_FILE = "fb374d419588a4632f3f557e76b4b70aebbca790"
CL100K_FILE = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"

# English prose written for this test: never part of the calibration corpus.
HELD_OUT_PROSE = (
    "The library closes early on Thursdays, which nobody in the department seems to remember until they are "
    "standing at the locked door with an armful of overdue books. Last week the queue of frustrated readers "
    "stretched halfway across the courtyard, and a porter eventually taped a handwritten sign to the glass.",
    "Before committing to a migration, write down what success looks like in numbers. If the goal is faster "
    "page loads, decide which pages, measured how, and by how much. Without that agreement the project will "
    "either end too early, because someone declares victory, or never end at all.",
    "My grandfather kept bees for forty years and never once wore gloves. He claimed the bees could tell "
    "when a keeper was nervous, and that calm hands were better protection than any suit. We children were "
    "not convinced, and watched his work from behind the kitchen window.",
    "Good documentation anticipates the reader's next question. After explaining what a function returns, "
    "it says what happens when the input is empty, when it is enormous, and when it is malformed. Each of "
    "those sentences saves a future engineer an afternoon of reading source code.",
    "The storm arrived a day ahead of the forecast. By noon the harbour master had closed the breakwater, the "
    "ferries were tied up three deep along the quay, and the cafe by the lifeboat station was doing the best "
    "trade it had seen since the regatta in August.",
    "Caching is easy to add and hard to remove. Once callers grow used to the speed, every invalidation bug "
    "becomes an incident, and nobody wants to be the person who turns the cache off to find out whether it "
    "is still needed. Decide up front how stale an answer may be, and write that number down.",
    "The orchestra rehearsed the final movement eleven times before the conductor was satisfied. The "
    "trouble, she explained afterwards, was not the notes but the silences between them: each pause had to "
    "last exactly as long as the hall needed for the previous chord to fade.",
    "Our hiring process used to take six weeks from first call to offer. We cut it to twelve days by "
    "scheduling every interview in a single afternoon, sharing written feedback within an hour, and giving "
    "one person the authority to make the decision the same evening.",
)
# Standard-library modules the calibration script does not read (it uses other docstrings and sources).
HELD_OUT_DOC_MODULES = ("argparse", "logging/__init__", "codecs", "zoneinfo/_zoneinfo", "sysconfig", "ast")
HELD_OUT_CODE_MODULES = ("argparse", "logging/__init__", "codecs", "hmac", "shelve", "linecache")

# The documented bounds (docs/tokens.md, "Token counting"): mean absolute error of the estimate against the
# exact encoding on text the weights were never fitted on.
PROSE_MEAN_ABS_BOUND = 0.08
CODE_MEAN_ABS_BOUND = 0.10

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "description": "The unit of temperature to return",
                         "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with no encoding loaded, by modelplex or by tiktoken, and no forced mode."""
    monkeypatch.delenv("MODELPLEX_TOKENIZER", raising=False)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    tokens._REGISTRY.clear()
    yield
    tokens._REGISTRY.clear()


@pytest.fixture
def shared_cache(tiktoken_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_dir))
    return tiktoken_dir


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    return tmp_path


class NetworkSpy:
    """Records every attempt to reach a network or to fetch a BPE file, and makes it fail."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def refuse(self, what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            self.attempts.append(f"{what}{args[:2]!r}")
            raise AssertionError(f"token counting must not {what}")
        return refused


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> NetworkSpy:
    spy = NetworkSpy()
    monkeypatch.setattr(socket.socket, "connect", spy.refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", spy.refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", spy.refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", spy.refuse("socket.getaddrinfo"))
    monkeypatch.setattr(tiktoken.load, "read_file", spy.refuse("tiktoken.load.read_file"))
    monkeypatch.setattr(tiktoken.load, "read_file_cached", spy.refuse("tiktoken.load.read_file_cached"))
    monkeypatch.setattr(tiktoken.load, "load_tiktoken_bpe", spy.refuse("tiktoken.load.load_tiktoken_bpe"))
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", spy.refuse("openai_public.load_tiktoken_bpe"))
    monkeypatch.setattr(tiktoken, "get_encoding", spy.refuse("tiktoken.get_encoding"))
    try:
        import requests
    except ImportError:  # pragma: no cover - tiktoken imports requests only to download
        pass
    else:
        monkeypatch.setattr(requests, "get", spy.refuse("requests.get"))
        monkeypatch.setattr(requests.Session, "request", spy.refuse("requests.Session.request"))
    return spy


def reference(name: str) -> tiktoken.Encoding:
    """tiktoken's own encoding, loaded by tiktoken from the shared cache (present: no download)."""
    return tiktoken.get_encoding(name)


def spec(model_id: str, **fields: Any) -> ModelSpec:
    return ModelSpec(id=model_id, provider=model_id.split("/", 1)[0], context_window=128_000, **fields)


# --------------------------------------------------------------------------------- import and lookup


def test_importing_the_module_does_not_import_tiktoken() -> None:
    code = "import sys, modelplex.catalog.tokens; sys.exit('tiktoken' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr or "tiktoken was imported"


@pytest.mark.parametrize(
    ("model", "family", "encoding"),
    [
        ("openai/gpt-4o", "openai", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "openai", "o200k_base"),
        ("azure/gpt-4.1", "openai", "o200k_base"),
        ("openai/gpt-5", "openai", "o200k_base"),
        ("o1", "openai", "o200k_base"),
        ("openrouter/openai/o3-mini", "openai", "o200k_base"),
        ("o4-mini-2025-04-16", "openai", "o200k_base"),
        ("openai/gpt-4", "openai", "cl100k_base"),
        ("gpt-4-turbo", "openai", "cl100k_base"),
        ("azure/gpt-35-turbo", "openai", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "openai", "cl100k_base"),
        ("openai/text-embedding-3-small", "openai", "cl100k_base"),
        ("text-embedding-ada-002", "openai", "cl100k_base"),
        ("ft:gpt-4o-2024-08-06:acme::abc123", "openai", "o200k_base"),
        ("groq/openai/gpt-oss-120b", "openai", "o200k_base"),
        ("openai/some-future-model", "openai", "o200k_base"),
        ("davinci", "openai", "r50k_base"),
        ("text-davinci-003", "openai", "p50k_base"),
        ("anthropic/claude-sonnet-4-5", "claude", None),
        ("bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "claude", None),
        ("gemini/gemini-2.5-flash", "gemini", None),
        ("vertex_ai/gemma-3-27b-it", "gemini", None),
        ("groq/llama-3.3-70b-versatile", "llama", None),
        ("together/meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama", None),
        ("mistral/mistral-large-latest", "mistral", None),
        ("mistral/codestral-latest", "mistral", None),
        ("openrouter/qwen/qwen3-235b-a22b", "qwen", None),
        ("deepseek/deepseek-chat", "deepseek", None),
        ("groq/deepseek-r1-distill-llama-70b", "llama", None),
        ("siliconflow/deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "qwen", None),
        ("xai/grok-4", "default", None),
        ("adaptive-model", "default", None),
        ("", "default", None),
        (None, "default", None),
    ],
)
def test_family_and_encoding_are_inferred_from_names(model: str | None, family: str, encoding: str | None) -> None:
    assert family_of(model) == family
    assert encoding_name_for(model) == encoding
    assert family in tokens.FAMILIES


def test_a_model_spec_is_read_through_its_fields() -> None:
    # An Azure deployment name says nothing; the catalog's tokenizer field does.
    assert encoding_name_for(spec("azure/prod-chat", tokenizer="cl100k_base")) == "cl100k_base"
    assert family_of(spec("azure/prod-chat", tokenizer="cl100k_base")) == "openai"
    assert family_of(spec("bedrock/us.anthropic.x-v1", family="claude-sonnet-4")) == "claude"
    assert family_of(spec("together/some-finetune", family="llama-3.1")) == "llama"
    assert encoding_name_for(spec("openai/gpt-4o", wire_name="gpt-4o-2024-11-20")) == "o200k_base"
    assert encoding_name_for(spec("groq/gpt-oss-20b", tokenizer="o200k_harmony")) == "o200k_base"
    assert encoding_name_for(spec("anthropic/claude-opus-4-1")) is None
    assert encoding_name_for(spec("custom/thing", tokenizer="sentencepiece-unknown")) is None


def test_cache_path_follows_tiktokens_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    default = Path(tempfile.gettempdir()) / "data-gym-cache" / O200K_FILE
    assert tokens.tiktoken_cache_path("o200k_base") == str(default)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "gym"))
    assert tokens.tiktoken_cache_path("cl100k_base") == str(tmp_path / "gym" / CL100K_FILE)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tk"))
    assert tokens.tiktoken_cache_path("o200k_base") == str(tmp_path / "tk" / O200K_FILE)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken: caching disabled, so every load downloads
    assert tokens.tiktoken_cache_path("o200k_base") is None
    assert tokens.tiktoken_cache_path("no_such_encoding") is None
    # tiktoken names cache files by the SHA-1 of the download URL
    assert hashlib.sha1(tokens._ENCODINGS["o200k_base"].url.encode()).hexdigest() == O200K_FILE


# ---------------------------------------------------------------------------------------- exact counts


SAMPLES = (
    "",
    "Hello, world!",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n",
    "Les élèves ont répondu à toutes les questions. Привет, как дела? 你好，世界！ こんにちは 😀👍🏽",
    "<|endoftext|> is counted as ordinary text here, and so is <|fim_prefix|>.",
    "1234567890 3.14159 2026-11-21T21:00:00Z 0xdeadbeef",
    "\t\t  \n\n   trailing spaces   ",
)


@pytest.mark.parametrize(("model", "name"), [("openai/gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")])
def test_counts_match_tiktoken_exactly(shared_cache: Path, monkeypatch: pytest.MonkeyPatch, model: str,
                                       name: str) -> None:
    expected = reference(name)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # hide tiktoken's copy: count with our own build
    for text in (*SAMPLES, *HELD_OUT_PROSE):
        result = count_text(text, model)
        assert result == TokenCount(len(expected.encode_ordinary(text)), True, f"tiktoken:{name}")
    loaded = encoding_for(model)
    assert loaded is not None and loaded.name == name and loaded is not expected


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_offline_build_equals_tiktokens_own_encoding(shared_cache: Path, name: str) -> None:
    ours = tokens._build_encoding(name, str(tokens.tiktoken_cache_path(name)))
    theirs = openai_public.ENCODING_CONSTRUCTORS[name]()
    assert ours._pat_str == theirs["pat_str"]
    assert ours._special_tokens == theirs["special_tokens"]
    # ours keeps its ranks only in tiktoken's Rust core (the Python copy is dropped to save memory)
    assert ours._mergeable_ranks == {}
    ranks = theirs["mergeable_ranks"]
    assert ours.max_token_value == max(*ranks.values(), *theirs["special_tokens"].values())
    assert all(ours.decode_single_token_bytes(rank) == token for token, rank in ranks.items())


def test_an_offline_encoding_pickles_through_the_registry(shared_cache: Path) -> None:
    import pickle

    ours = tokens.encoding_for("gpt-4o")
    assert ours is not None
    again = pickle.loads(pickle.dumps(ours))
    assert again is ours and again.encode_ordinary("Hello there") == ours.encode_ordinary("Hello there")


def test_old_encodings_use_tiktokens_patterns() -> None:
    # Their BPE files are not shared here, so compare what can be compared without loading them.
    for name in ("r50k_base", "p50k_base"):
        assert tokens._ENCODINGS[name].pat_str == openai_public.r50k_pat_str


def test_loaded_once_and_shared_across_threads(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[str] = []
    real_build = tokens._build_encoding
    barrier = threading.Barrier(8)

    def counting_build(name: str, path: str) -> tiktoken.Encoding:
        builds.append(name)
        return real_build(name, path)

    def count(_: int) -> TokenCount:
        barrier.wait()
        return count_text(HELD_OUT_PROSE[0], "gpt-4o")

    monkeypatch.setattr(tokens, "_build_encoding", counting_build)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(count, range(8)))
    assert builds == ["o200k_base"]
    assert all(r == results[0] for r in results) and results[0].exact


def test_an_encoding_tiktoken_already_loaded_is_reused(shared_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    preloaded = reference("o200k_base")  # the application loaded it through tiktoken
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # and then the cache directory changed
    assert encoding_for("gpt-4o") is preloaded
    assert count_text("Hello there", "gpt-4o").exact


def test_a_changed_cache_directory_is_honoured(shared_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path, no_network: NetworkSpy) -> None:
    assert count_text("Hello there", "gpt-4o").exact
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert count_text("Hello there", "gpt-4o") == TokenCount(
        tokens._estimate("Hello there", tokens._COEFFICIENTS["o200k_base"], (1.0, 1.0)), False, "heuristic:openai")
    assert no_network.attempts == []


def test_estimate_combined_size_adds_up(shared_cache: Path) -> None:
    combined = estimate_combined_size(HELD_OUT_PROSE, "gpt-4o")
    encoding = reference("o200k_base")
    assert combined == TokenCount(sum(len(encoding.encode_ordinary(t)) for t in HELD_OUT_PROSE), True,
                                  "tiktoken:o200k_base")
    assert estimate_combined_size([], "gpt-4o").tokens == 0


# -------------------------------------------------------------------------------- offline, no network


def test_empty_cache_estimates_without_any_network_attempt(empty_cache: Path, no_network: NetworkSpy) -> None:
    text = HELD_OUT_PROSE[1]
    for model, family in [("openai/gpt-4o", "openai"), ("gpt-4", "openai"), ("anthropic/claude-sonnet-4", "claude"),
                          ("gemini/gemini-2.5-pro", "gemini"), (None, "default")]:
        result = count_text(text, model)
        assert result.exact is False
        assert result.method == f"heuristic:{family}"
        assert result.tokens > 0
        assert encoding_for(model) is None
    assert count_messages([{"role": "user", "content": text}], "gpt-4o").exact is False
    assert no_network.attempts == []
    assert list(empty_cache.iterdir()) == []  # nothing was downloaded or written


def test_heuristic_openai_uses_the_weights_of_the_models_encoding(empty_cache: Path) -> None:
    text = HELD_OUT_PROSE[2]
    assert count_text(text, "gpt-4").tokens == tokens._estimate(text, tokens._COEFFICIENTS["cl100k_base"], (1, 1))
    assert count_text(text, "gpt-4o").tokens == tokens._estimate(text, tokens._COEFFICIENTS["o200k_base"], (1, 1))


def test_corrupt_cache_file_is_not_trusted_nor_refetched(empty_cache: Path, no_network: NetworkSpy,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    bad = empty_cache / O200K_FILE
    bad.write_bytes(b"not a bpe file\n")
    builds: list[str] = []
    real_build = tokens._build_encoding

    def counting_build(name: str, path: str) -> tiktoken.Encoding:
        builds.append(name)
        return real_build(name, path)

    monkeypatch.setattr(tokens, "_build_encoding", counting_build)
    with caplog.at_level(logging.WARNING, logger="modelplex.catalog.tokens"):
        first = count_text("Hello there", "gpt-4o")
        second = count_text("Hello again", "gpt-4o")
    assert not first.exact and not second.exact
    assert first.method == "heuristic:openai"
    assert builds == ["o200k_base"]  # the failure is remembered, not retried on every call
    assert "unusable" in caplog.text
    assert bad.read_bytes() == b"not a bpe file\n"  # tiktoken would delete it and download again
    assert no_network.attempts == []


def test_forced_heuristics_ignore_a_present_cache(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLEX_TOKENIZER", "heuristic")
    assert encoding_for("gpt-4o") is None
    result = count_text(HELD_OUT_PROSE[0], "gpt-4o")
    assert result.exact is False and result.method == "heuristic:openai"
    assert count_messages([{"role": "user", "content": "hi"}], "gpt-4o").exact is False


# ---------------------------------------------------------------------------------- the counter memo


class FakeMonotonic:
    """Stands in for the ``time`` module inside ``tokens``: the memo's clock moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(tokens, "time", fake)
    return fake


def _estimate_openai(text: str, encoding: str = "o200k_base") -> TokenCount:
    return TokenCount(tokens._estimate(text, tokens._COEFFICIENTS[encoding], (1.0, 1.0)), False, "heuristic:openai")


def _exact(text: str, path: Path, name: str = "o200k_base") -> TokenCount:
    """Our own build from the file (tiktoken's registry stays empty, so nothing is shared by accident)."""
    return TokenCount(len(tokens._build_encoding(name, str(path)).encode_ordinary(text)), True, f"tiktoken:{name}")


def test_counter_memo_follows_the_tokenizer_environment(shared_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path, no_network: NetworkSpy) -> None:
    text = HELD_OUT_PROSE[3]
    exact = _exact(text, shared_cache / O200K_FILE)
    estimate = _estimate_openai(text)
    msgs = [{"role": "user", "content": text}]
    assert count_text(text, "gpt-4o") == exact
    for _ in range(2):  # there and back again, twice: every switch is honoured at the next call
        monkeypatch.setenv("MODELPLEX_TOKENIZER", "heuristic")
        assert count_text(text, "gpt-4o") == estimate
        assert count_messages(msgs, "gpt-4o").exact is False
        monkeypatch.setenv("MODELPLEX_TOKENIZER", " Heuristic ")
        assert count_text(text, "gpt-4o") == estimate
        monkeypatch.setenv("MODELPLEX_TOKENIZER", "tiktoken")  # anything else: exact where possible
        assert count_text(text, "gpt-4o") == exact
        monkeypatch.delenv("MODELPLEX_TOKENIZER")
        assert count_text(text, "gpt-4o") == exact
        assert count_messages(msgs, "gpt-4o").exact is True
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # a cache without the file
        assert count_text(text, "gpt-4o") == estimate
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # caching off
        assert count_text(text, "gpt-4o") == estimate
        monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
        monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(shared_cache))
        assert count_text(text, "gpt-4o") == exact
        monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
        assert count_text(text, "gpt-4o") == estimate
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(shared_cache))  # TIKTOKEN_CACHE_DIR wins
        assert count_text(text, "gpt-4o") == exact
        monkeypatch.delenv("DATA_GYM_CACHE_DIR")
    assert no_network.attempts == []


def test_a_missing_encoding_file_is_rechecked(empty_cache: Path, tiktoken_dir: Path, fake_time: FakeMonotonic,
                                              no_network: NetworkSpy) -> None:
    text = HELD_OUT_PROSE[4]
    estimate = count_text(text, "gpt-4o")
    assert estimate == _estimate_openai(text)
    shutil.copyfile(tiktoken_dir / O200K_FILE, empty_cache / O200K_FILE)  # the file appears later
    exact = _exact(text, empty_cache / O200K_FILE)
    fake_time.now += tokens._MISSING_FILE_RECHECK_S / 2
    assert count_text(text, "gpt-4o") == estimate  # documented: looked for again only every few seconds
    assert count_text(text, "openai/gpt-4o-mini") == exact  # a model not asked about yet looks at once
    fake_time.now += tokens._MISSING_FILE_RECHECK_S
    assert count_text(text, "gpt-4o") == exact
    assert count_messages([{"role": "user", "content": text}], "gpt-4o").exact is True
    fake_time.now += 10 * 365 * 86_400.0  # a loaded encoding is final: time does not matter any more
    assert count_text(text, "gpt-4o") == exact
    # and the other way: a file that goes missing again is still counted with the loaded encoding
    (empty_cache / O200K_FILE).unlink()
    assert count_text(text, "gpt-4o") == exact
    assert no_network.attempts == []


def test_clearing_the_registry_clears_the_counter_memo(empty_cache: Path, tiktoken_dir: Path,
                                                       fake_time: FakeMonotonic) -> None:
    text = HELD_OUT_PROSE[5]
    assert count_text(text, "gpt-4o") == _estimate_openai(text)
    assert tokens._REGISTRY.counters
    shutil.copyfile(tiktoken_dir / O200K_FILE, empty_cache / O200K_FILE)
    tokens._REGISTRY.clear()
    assert tokens._REGISTRY.counters == {}
    assert count_text(text, "gpt-4o") == _exact(text, empty_cache / O200K_FILE)  # no time has passed


def test_the_counter_memo_keys_on_every_model_attribute(shared_cache: Path) -> None:
    text = HELD_OUT_PROSE[6] + " 数据 данные"
    models: list[ModelSpec | str | None] = [
        spec("azure/prod-chat", tokenizer="cl100k_base"), spec("azure/prod-chat"),  # same id, other tokenizer
        spec("custom/chat", family="llama-3.1"), spec("custom/chat", family="qwen3"),  # same id, other family
        spec("azure/deploy-1"), spec("azure/deploy-1", wire_name="gpt-4-0613"),  # the wire name decides
        spec("anthropic/claude-opus-4-1"), spec("anthropic/claude-opus-4-7"),  # the newer tokenizer's scale
        "gpt-4", "GPT-4o", "gemini-2.5-pro", "deepseek-chat", None, "",
    ]
    memoized = [count_text(text, m) for m in models * 2]
    assert memoized[: len(models)] == memoized[len(models) :]
    fresh = []
    for m in models:
        tokens._REGISTRY.counters.clear()
        fresh.append(count_text(text, m))
    assert memoized[: len(models)] == fresh
    assert [c.method for c in fresh[:6]] == ["tiktoken:cl100k_base", "tiktoken:o200k_base", "heuristic:llama",
                                             "heuristic:qwen", "tiktoken:o200k_base", "tiktoken:cl100k_base"]
    assert fresh[6].method == fresh[7].method == "heuristic:claude" and fresh[6].tokens < fresh[7].tokens


# ---------------------------------------------------------------------------- heuristic error bounds


def _docstrings(modules: tuple[str, ...]) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for module in modules:
        path = stdlib / f"{module}.py"
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 300 and ">>>" not in doc:
                    found.append(doc)
    return found


def _code_chunks(modules: tuple[str, ...]) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chunks = []
    for module in modules:
        lines = (stdlib / f"{module}.py").read_text(encoding="utf-8").splitlines(keepends=True)
        chunks += ["".join(lines[i : i + 60]) for i in range(0, len(lines), 60) if len(lines[i : i + 60]) == 60]
    return chunks


def _mean_abs_error(texts: list[str], model: str, name: str) -> float:
    exact = reference(name)
    errors = [abs(count_text(t, model).tokens - len(exact.encode_ordinary(t))) / len(exact.encode_ordinary(t))
              for t in texts]
    return sum(errors) / len(errors)


@pytest.mark.parametrize(("model", "name"), [("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")])
def test_heuristic_error_on_held_out_english_prose(shared_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                   model: str, name: str) -> None:
    texts = [*HELD_OUT_PROSE, "\n\n".join(HELD_OUT_PROSE), *_docstrings(HELD_OUT_DOC_MODULES)]
    assert len(texts) > 30
    reference(name)  # load tiktoken's own, then hide it from modelplex
    monkeypatch.setenv("MODELPLEX_TOKENIZER", "heuristic")
    assert count_text(texts[0], model).method == "heuristic:openai"
    assert _mean_abs_error(texts, model, name) < PROSE_MEAN_ABS_BOUND


@pytest.mark.parametrize(("model", "name"), [("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")])
def test_heuristic_error_on_held_out_code(shared_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                          model: str, name: str) -> None:
    texts = _code_chunks(HELD_OUT_CODE_MODULES)
    assert len(texts) > 30
    reference(name)
    monkeypatch.setenv("MODELPLEX_TOKENIZER", "heuristic")
    assert _mean_abs_error(texts, model, name) < CODE_MEAN_ABS_BOUND


def test_family_scales_apply_to_ascii_and_other_scripts_separately(empty_cache: Path) -> None:
    english = " ".join(HELD_OUT_PROSE)
    old, new = count_text(english, "claude-opus-4-6").tokens, count_text(english, "claude-opus-4-7").tokens
    assert new / old == pytest.approx(1.56 / 1.20, rel=0.01)  # Opus 4.7's tokenizer: more tokens for English
    chinese = "为了提高系统的稳定性，我们在每个服务前面都加了一层熔断器。" * 20
    assert count_text(chinese, "claude-opus-4-7").tokens == count_text(chinese, "claude-opus-4-6").tokens
    assert count_text(chinese, "deepseek-chat").tokens < count_text(chinese, "gpt-4o").tokens
    assert count_text(english, "claude-3-5-sonnet-20241022").tokens > count_text(english, "gpt-4o").tokens


# ---------------------------------------------------------------------------------------- messages


# OpenAI Cookbook, "How to count tokens with tiktoken": the API reported 124 prompt tokens on gpt-4o and
# gpt-4o-mini and 129 on gpt-4 and gpt-3.5-turbo for these messages, and 101 / 105 for the tools example.
COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate "
                                  "jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch "
                                                          "base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to "
                                                               "do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client "
                                "deliverable."},
]
COOKBOOK_TOOL_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(("model", "expected"), [("gpt-4o", 124), ("gpt-4o-mini", 124), ("gpt-4", 129),
                                                 ("gpt-3.5-turbo", 129)])
def test_message_overhead_matches_openais_published_counts(shared_cache: Path, model: str, expected: int) -> None:
    result = count_messages(COOKBOOK_MESSAGES, model)
    assert result.tokens == expected
    assert result.exact


@pytest.mark.parametrize(("model", "expected"), [("gpt-4o", 101), ("gpt-4o-mini", 101), ("gpt-4", 105),
                                                 ("gpt-3.5-turbo", 105)])
def test_tool_definitions_match_openais_published_counts(shared_cache: Path, model: str, expected: int) -> None:
    result = count_messages(COOKBOOK_TOOL_MESSAGES, model, tools=[WEATHER_TOOL])
    assert result.tokens == expected
    assert result.exact


def test_message_formula_without_an_encoding(empty_cache: Path) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "name": "ann", "content": "Hi there"}]
    parts = ["system", "Be brief.", "user", "ann", "Hi there"]
    expected = 3 * 2 + sum(count_text(p, "claude-sonnet-4").tokens for p in parts) + 1 + 3
    assert count_messages(messages, "claude-sonnet-4") == TokenCount(expected, False, "heuristic:claude")
    assert count_messages([], "gpt-4o").tokens == 3


def test_tool_calls_and_results_are_counted(shared_cache: Path) -> None:
    encoding = reference("o200k_base")
    arguments = json.dumps({"location": "Paris, France", "unit": "celsius"})
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_current_weather", "arguments": arguments}},
        {"id": "call_2", "type": "function", "function": {"name": "get_current_weather", "arguments": "{}"}},
    ]}
    result_message = {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18}'}
    base = count_messages([{"role": "user", "content": "Weather?"}], "gpt-4o")
    with_calls = count_messages([{"role": "user", "content": "Weather?"}, call, result_message], "gpt-4o")
    n = lambda s: len(encoding.encode_ordinary(s))  # noqa: E731
    call_tokens = (3 + n("assistant") + 2 * (tokens.TOOL_CALL_OVERHEAD + n("get_current_weather"))
                   + n(arguments) + n("{}") + 3)
    result_tokens = 3 + n("tool") + n("call_1") + n('{"temperature": 18}')
    assert with_calls.tokens == base.tokens + call_tokens + result_tokens
    assert with_calls.exact is False  # OpenAI does not publish how tool calls are rendered


def _wav_base64(seconds: float, rate: int = 16_000) -> str:
    frames = int(seconds * rate)
    header = b"RIFF" + struct.pack("<I", 36 + frames * 2) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", frames * 2)
    return base64.b64encode(header + b"\x00\x00" * frames).decode()


def test_media_parts_get_documented_estimates(shared_cache: Path) -> None:
    def with_part(part: dict[str, Any], model: str) -> TokenCount:
        return count_messages([{"role": "user", "content": [{"type": "text", "text": "Describe this."}, part]}], model)

    text_only = count_messages([{"role": "user", "content": [{"type": "text", "text": "Describe this."}]}], "gpt-4o")
    assert text_only.exact  # a single text part is plain content
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    low = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}
    assert with_part(image, "gpt-4o") == TokenCount(text_only.tokens + 765, False, "tiktoken:o200k_base")
    assert with_part(low, "gpt-4o").tokens == text_only.tokens + 85
    claude_text = count_messages([{"role": "user", "content": [{"type": "text", "text": "Describe this."}]}],
                                 "claude-sonnet-4")
    assert with_part(image, "claude-sonnet-4").tokens == claude_text.tokens + tokens.IMAGE_TOKENS["claude"]
    audio = {"type": "input_audio", "input_audio": {"data": _wav_base64(3.0), "format": "wav"}}
    assert with_part(audio, "gpt-4o").tokens == text_only.tokens + 30  # 3 s at 10 tokens per second
    pdf = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    assert with_part(pdf, "gpt-4o").tokens == text_only.tokens + tokens.FILE_PART_TOKENS
    assert not with_part(pdf, "gpt-4o").exact
    pages = b"%PDF-1.7\n" + b"".join(b"%d 0 obj << /Type /Page >> endobj\n" % i for i in range(3))
    three = {"type": "file", "file": {"file_data": "data:application/pdf;base64," + base64.b64encode(pages).decode()}}
    assert with_part(three, "gpt-4o").tokens == text_only.tokens + 3 * tokens.FILE_PART_TOKENS
    by_id = {"type": "file", "file": {"file_id": "file-abc"}}
    assert with_part(by_id, "gpt-4o").tokens == text_only.tokens + tokens.FILE_PART_TOKENS  # one page, a floor


def test_nested_tool_schemas_are_counted_but_inexact(shared_cache: Path) -> None:
    nested = json.loads(json.dumps(WEATHER_TOOL))
    nested["function"]["parameters"]["properties"]["days"] = {
        "type": "array", "description": "Days to forecast", "items": {"type": "string", "format": "date"}}
    flat = count_messages(COOKBOOK_TOOL_MESSAGES, "gpt-4o", tools=[WEATHER_TOOL])
    deep = count_messages(COOKBOOK_TOOL_MESSAGES, "gpt-4o", tools=[nested])
    assert deep.tokens > flat.tokens + 3 and deep.exact is False


def test_claude_tools_add_the_tool_use_system_prompt(empty_cache: Path) -> None:
    without = count_messages(COOKBOOK_TOOL_MESSAGES, "claude-sonnet-4")
    with_tools = count_messages(COOKBOOK_TOOL_MESSAGES, "claude-sonnet-4", tools=[WEATHER_TOOL])
    assert with_tools.tokens - without.tokens > tokens.CLAUDE_TOOL_SYSTEM_PROMPT


# --------------------------------------------------------------------------------------- properties

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=400)  # includes lone surrogates
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY_SETTINGS
@given(a=ANY_TEXT, b=ANY_TEXT, model=st.sampled_from(["gpt-4o", "gpt-4", "claude-opus-4-7", "gemini-2.5-pro",
                                                      "llama-3.3-70b", "deepseek-chat", "unknown"]))
def test_estimates_are_total_non_negative_and_subadditive(empty_cache: Path, a: str, b: str, model: str) -> None:
    ca, cb, cab = (count_text(t, model).tokens for t in (a, b, a + b))
    assert min(ca, cb, cab) >= 0
    assert (ca == 0) == (a == "")
    assert cab <= ca + cb + 2


@PROPERTY_SETTINGS
@given(a=ANY_TEXT, b=ANY_TEXT)
def test_exact_counts_are_total_and_match_tiktoken(shared_cache: Path, a: str, b: str) -> None:
    # BPE is not subadditive (joining texts can change the pre-tokenizer's splits), so the exact path is
    # checked against tiktoken itself instead, on each part and on the concatenation.
    enc = encoding_for("gpt-4o")
    assert enc is not None
    for text in (a, b, a + b):
        got = count_text(text, "gpt-4o")
        assert got.exact and got.tokens == len(enc.encode(text, disallowed_special=()))


@PROPERTY_SETTINGS
@given(messages=st.lists(st.dictionaries(st.sampled_from(["role", "content", "name", "tool_calls", "tool_call_id",
                                                          "function_call", "audio", "x"]), JSONISH, max_size=5)
                         | JSONISH, max_size=4),
       tools=st.none() | st.lists(JSONISH, max_size=3))
def test_count_messages_never_raises(empty_cache: Path, messages: Any, tools: Any) -> None:
    result = count_messages(messages, "gpt-4o", tools=tools)
    assert result.tokens >= 3 and result.method == "heuristic:openai"


@PROPERTY_SETTINGS
@given(messages=JSONISH, tools=JSONISH)
def test_count_messages_is_total_even_on_wrong_types(empty_cache: Path, messages: Any, tools: Any) -> None:
    result = count_messages(messages, "claude-sonnet-4", tools=tools)
    assert result.tokens >= 3 and result.exact is False
