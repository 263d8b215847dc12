"""Token counting: exact with tiktoken where its encoding is available offline, calibrated estimates otherwise.

Owns: ``count_text``, ``count_messages``, ``estimate_combined_size``, ``encoding_for``, ``family_of`` and the
heuristic coefficients fitted by ``scripts/calibrate_tokens.py`` (see ``docs/tokens.md``).

Must not touch: the network. tiktoken downloads its BPE files when they are not cached, so this module
never calls ``tiktoken.get_encoding``; it reads the file from tiktoken's cache directory itself, checks its
SHA-256 and builds the ``Encoding`` from it. When the file is absent the count is a heuristic estimate,
flagged ``exact=False``. Importing this module does not import tiktoken.

Environment:
  ``TIKTOKEN_CACHE_DIR`` / ``DATA_GYM_CACHE_DIR`` — where tiktoken's cached BPE files live (tiktoken's own
  rules; default ``<tempdir>/data-gym-cache``; an empty value means "no cache", hence heuristics).
  ``MODELPLEX_TOKENIZER=heuristic`` — never load an encoding; always estimate.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelplex.types import TokenCount

if TYPE_CHECKING:
    import tiktoken

    from modelplex.catalog.schema import ModelSpec

log = logging.getLogger(__name__)

__all__ = [
    "FAMILIES",
    "count_messages",
    "count_text",
    "encoding_for",
    "encoding_name_for",
    "estimate_combined_size",
    "family_of",
    "text_features",
    "tiktoken_cache_path",
]

FAMILIES: tuple[str, ...] = ("openai", "claude", "gemini", "llama", "mistral", "qwen", "deepseek", "default")
"""Keys ``family_of`` returns."""

TOKENIZER_ENV = "MODELPLEX_TOKENIZER"

# =============================================================================================
# tiktoken encodings: where tiktoken caches them and how to rebuild them without tiktoken's loader
# =============================================================================================


@dataclass(frozen=True, slots=True)
class _EncodingSource:
    url: str
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]
    explicit_n_vocab: int | None = None


# Copied from tiktoken_ext/openai_public.py (tiktoken 0.14). The test suite checks these against tiktoken's
# own constructors, so a drift in a future tiktoken fails a test instead of miscounting silently.
_R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"
_ENCODINGS: dict[str, _EncodingSource] = {
    "o200k_base": _EncodingSource(
        _BLOB + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    "cl100k_base": _EncodingSource(
        _BLOB + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
         "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
    ),
    "p50k_base": _EncodingSource(
        _BLOB + "p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
        _R50K_PAT,
        {"<|endoftext|>": 50256},
        50281,
    ),
    "r50k_base": _EncodingSource(
        _BLOB + "r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        _R50K_PAT,
        {"<|endoftext|>": 50256},
        50257,
    ),
}
_ENCODING_ALIASES = {"o200k_harmony": "o200k_base"}
"""Encodings whose ordinary (non-special) tokens are another's: gpt-oss's harmony adds only special tokens."""


def tiktoken_cache_path(encoding_name: str) -> str | None:
    """Where tiktoken would cache ``encoding_name``'s BPE file now, or None when caching is off or unknown.

    Mirrors ``tiktoken.load.read_file_cached``: ``$TIKTOKEN_CACHE_DIR``, else ``$DATA_GYM_CACHE_DIR``, else
    ``<tempdir>/data-gym-cache``; the file is named by the SHA-1 of its download URL.
    """
    source = _ENCODINGS.get(_ENCODING_ALIASES.get(encoding_name, encoding_name))
    if source is None:
        return None
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return None  # tiktoken treats "" as "no cache": every load would download
    return os.path.join(cache_dir, hashlib.sha1(source.url.encode()).hexdigest())


class _EncodingRegistry:
    """Loaded encodings keyed by (name, file), built at most once each; thread-safe. An explicit registry.

    An encoding the application already loaded through tiktoken itself is reused as it is. Otherwise the
    key includes the file, so a changed ``TIKTOKEN_CACHE_DIR`` is honoured; files that failed to load are
    remembered by (path, mtime, size) so a bad file is not re-read on every call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], tiktoken.Encoding] = {}
        self._failed: set[tuple[str, str, int, int]] = set()
        self.counters: dict[tuple[Any, ...], tuple[_Counter, float]] = {}
        """``_counter_for``'s memo: (model attributes, environment) -> (counter, valid until, monotonic)."""

    def get(self, name: str) -> tiktoken.Encoding | None:
        name = _ENCODING_ALIASES.get(name, name)
        if name not in _ENCODINGS:
            return None
        already = _already_loaded_by_tiktoken(name)
        if already is not None:
            return already
        path = tiktoken_cache_path(name)
        if path is None:
            return None
        key = (name, path)
        encoding = self._loaded.get(key)
        if encoding is not None:
            return encoding
        try:
            stat = os.stat(path)
        except OSError:
            return None  # not cached: estimate instead of downloading
        failure_key = (name, path, stat.st_mtime_ns, stat.st_size)
        if failure_key in self._failed:
            return None
        with self._lock:
            encoding = self._loaded.get(key)
            if encoding is not None:
                return encoding
            try:
                encoding = _build_encoding(name, path)
            except Exception as exc:  # a corrupt file or a broken tiktoken must never break counting
                log.warning("tiktoken encoding %s at %s is unusable (%s); estimating token counts instead",
                            name, path, exc)
                self._failed.add(failure_key)
                return None
            self._loaded[key] = encoding
            return encoding

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()
            self._failed.clear()
            self.counters.clear()


def _already_loaded_by_tiktoken(name: str) -> tiktoken.Encoding | None:
    """An encoding the application already loaded through tiktoken itself (no I/O, no import)."""
    registry = sys.modules.get("tiktoken.registry")
    encodings = getattr(registry, "ENCODINGS", None)
    if isinstance(encodings, dict):
        return encodings.get(name)
    return None


def _build_encoding(name: str, path: str) -> tiktoken.Encoding:
    """Build an Encoding from a cached BPE file, the way tiktoken's constructors do, with no network path."""
    import tiktoken

    source = _ENCODINGS[name]
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise ValueError(f"SHA-256 {digest} does not match the expected {source.sha256}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    encoding = tiktoken.Encoding(
        name=name,
        pat_str=source.pat_str,
        mergeable_ranks=ranks,
        special_tokens=dict(source.special_tokens),
        explicit_n_vocab=source.explicit_n_vocab,
    )
    # The Rust core holds its own copy of the ranks; tiktoken keeps the Python dict only for pickling.
    # Dropping it saves ~30 MB per loaded encoding (o200k_base); pickling goes through the registry.
    encoding._mergeable_ranks = {}
    encoding.__class__ = _lean_encoding_class()
    return encoding


@functools.cache
def _lean_encoding_class() -> type:
    import tiktoken

    class LeanEncoding(tiktoken.Encoding):  # type: ignore[misc]
        """A tiktoken Encoding built by modelplex without the Python copy of its ranks."""

        def __reduce__(self) -> tuple[Any, ...]:
            return _registry_encoding, (self.name,)

    return LeanEncoding


def _registry_encoding(name: str) -> tiktoken.Encoding | None:
    """Unpickle a lean encoding: the registry loads it again (from the same cache, never the network)."""
    return _REGISTRY.get(name)


_REGISTRY = _EncodingRegistry()


def _heuristics_forced() -> bool:
    return os.environ.get(TOKENIZER_ENV, "").strip().lower() == "heuristic"


# =============================================================================================
# Which encoding and which family a model uses
# =============================================================================================

# Checked in order; mirrors tiktoken.model, plus names it does not know yet.
_OPENAI_NAME_PREFIXES: tuple[tuple[str, str], ...] = (
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada", "cl100k_base"),
    ("gpt-35-turbo", "cl100k_base"),  # Azure's spelling
    ("gpt-3.5", "cl100k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-oss", "o200k_base"),  # o200k_harmony: the same ordinary tokens
    ("gpt-4", "cl100k_base"),  # gpt-4, gpt-4-turbo, gpt-4-32k
    ("chatgpt", "o200k_base"),
    ("codex-", "o200k_base"),
    ("computer-use", "o200k_base"),
    ("omni-moderation", "o200k_base"),
    ("davinci-002", "cl100k_base"),
    ("babbage-002", "cl100k_base"),
    ("text-davinci-003", "p50k_base"),
    ("text-davinci-002", "p50k_base"),
    ("code-davinci", "p50k_base"),
    ("code-cushman", "p50k_base"),
    ("text-davinci-001", "r50k_base"),
    ("text-curie", "r50k_base"),
    ("text-babbage", "r50k_base"),
    ("text-ada", "r50k_base"),
)
_OPENAI_NAME_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^o\d+(?:$|-)"), "o200k_base"),  # o1, o3-mini, o4-mini-2025-04-16
    (re.compile(r"^gpt-\d"), "o200k_base"),  # gpt-5, gpt-5.1-codex and any newer gpt-N
    (re.compile(r"^(?:davinci|curie|babbage|ada)$"), "r50k_base"),
)


def _model_attrs(model: Any) -> tuple[str, str, str, str | None]:
    """(id, family, provider, tokenizer) of a ModelSpec-like object or a string id, lower-cased."""
    if model is None:
        return "", "", "", None
    if isinstance(model, str):
        ident = model.strip().lower()
        provider = ident.split("/", 1)[0] if "/" in ident else ""
        return ident, "", provider, None
    ident = str(getattr(model, "id", "") or "").lower()
    wire = getattr(model, "wire_name", None)
    if wire:
        ident = f"{ident} {str(wire).lower()}"
    family = str(getattr(model, "family", "") or "").lower()
    provider = str(getattr(model, "provider", "") or "").lower()
    tokenizer = getattr(model, "tokenizer", None)
    return ident, family, provider, (str(tokenizer) if tokenizer else None)


def _bare_names(ident: str) -> list[str]:
    """Candidate bare model names in an id: 'azure/gpt-4o' -> ['gpt-4o'], 'ft:gpt-4o:org::x' -> ['gpt-4o']."""
    names = []
    for part in ident.split():
        name = part.rsplit("/", 1)[-1]
        if name.startswith("ft:"):
            name = name[3:]
        names.append(name.removeprefix("openai."))  # Bedrock-style "openai.gpt-oss-120b-1:0"
    return names


def _openai_encoding_by_name(ident: str) -> str | None:
    for name in _bare_names(ident):
        for prefix, encoding in _OPENAI_NAME_PREFIXES:
            if name.startswith(prefix):
                return encoding
        for pattern, encoding in _OPENAI_NAME_PATTERNS:
            if pattern.match(name):
                return encoding
    return None


_FAMILY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("claude", ("claude",)),
    ("gemini", ("gemini", "gemma", "learnlm")),
    ("llama", ("llama",)),
    ("mistral", ("mistral", "mixtral", "codestral", "ministral", "pixtral", "magistral", "devstral",
                 "voxtral")),
    ("qwen", ("qwen", "qwq")),
    ("deepseek", ("deepseek",)),
)
_PROVIDER_FAMILY = {
    "openai": "openai", "azure": "openai", "anthropic": "claude", "gemini": "gemini", "google": "gemini",
    "vertex_ai": "gemini", "mistral": "mistral", "deepseek": "deepseek", "qwen": "qwen", "dashscope": "qwen",
    "meta": "llama", "meta-llama": "llama",
}


@functools.lru_cache(maxsize=2048)
def _resolve(ident: str, family: str, provider: str, tokenizer: str | None) -> tuple[str, str | None]:
    """(family key, tiktoken encoding name or None) from a model's lower-cased attributes. Pure, so memoised."""
    key = _family_key(ident, family, provider, tokenizer)
    if tokenizer:
        name = _ENCODING_ALIASES.get(tokenizer, tokenizer)
        return key, (name if name in _ENCODINGS else None)
    if key != "openai":
        return key, None
    found = _openai_encoding_by_name(ident)
    if found is None and provider in ("openai", "azure"):
        found = "o200k_base"  # an OpenAI model we do not recognise: every current one uses o200k_base
    return key, found


def _family_key(ident: str, family: str, provider: str, tokenizer: str | None) -> str:
    for text in (family, ident):
        if not text:
            continue
        if "distill" in text:
            text = text.split("distill", 1)[1] or text
        for key, keywords in _FAMILY_KEYWORDS:
            if any(k in text for k in keywords):
                return key
        if _openai_encoding_by_name(text):
            return "openai"
    if tokenizer and _ENCODING_ALIASES.get(tokenizer, tokenizer) in _ENCODINGS:
        return "openai"
    return _PROVIDER_FAMILY.get(provider, "default")


def family_of(model: ModelSpec | str | None) -> str:
    """A heuristic tokenizer-family key: one of ``FAMILIES``.

    Reads the spec's ``family``, then its id (and wire name), then its ``tokenizer``, then its provider. A
    distilled model counts as its base (``deepseek-r1-distill-llama-70b`` is a Llama). Unknown: ``"default"``.
    """
    return _resolve(*_model_attrs(model))[0]


def encoding_name_for(model: ModelSpec | str | None) -> str | None:
    """The tiktoken encoding name for a model: the spec's ``tokenizer``, else inferred from OpenAI names.

    Returns None for models without a known tiktoken encoding (Claude, Gemini, Llama ...). Needs no catalog.
    """
    return _resolve(*_model_attrs(model))[1]


def encoding_for(model: ModelSpec | str | None) -> tiktoken.Encoding | None:
    """The loaded tiktoken Encoding for a model, or None when it has none or it is not available offline.

    None as well under ``MODELPLEX_TOKENIZER=heuristic``. Never downloads.
    """
    if _heuristics_forced():
        return None
    name = encoding_name_for(model)
    if name is None:
        return None
    return _REGISTRY.get(name)


# =============================================================================================
# Heuristic estimate: a few character-class counts, weighted per encoding and scaled per family
# =============================================================================================

# One translate pass maps every UTF-8 byte to a class byte; str/bytes .count then does the rest in C.
# ASCII classes: b"0" digit, b" " space or tab, b"\n" line break, b"." punctuation/symbol, b"a" letter.
# Each non-ASCII character has exactly one lead byte; its range says roughly which script it is from.
_LEAD_CLASSES: tuple[tuple[bytes, int, int, str], ...] = (
    (b"L", 0xC0, 0xCB, "Latin-1 supplement, Latin extended, IPA"),
    (b"G", 0xCC, 0xCF, "combining marks, Greek"),
    (b"C", 0xD0, 0xD4, "Cyrillic"),
    (b"R", 0xD5, 0xD7, "Armenian, Hebrew"),
    (b"B", 0xD8, 0xDF, "Arabic, Syriac, Thaana, N'Ko"),
    (b"I", 0xE0, 0xE0, "Indic scripts, Thai, Lao, Tibetan"),
    (b"V", 0xE1, 0xE1, "Georgian, Hangul jamo, Latin extended additional (Vietnamese), Greek extended"),
    (b"P", 0xE2, 0xE2, "typographic punctuation, symbols, arrows, box drawing, dingbats"),
    (b"J", 0xE3, 0xE3, "CJK punctuation, Hiragana, Katakana"),
    (b"K", 0xE4, 0xE9, "CJK ideographs"),
    (b"H", 0xEA, 0xED, "Hangul syllables, Yi"),
    (b"F", 0xEE, 0xEF, "private use, CJK compatibility, full-width forms, variation selectors"),
    (b"E", 0xF0, 0xFF, "four-byte characters: emoji, rare CJK"),
)
LEAD_CLASS_NAMES: tuple[str, ...] = tuple(c.decode() for c, _lo, _hi, _doc in _LEAD_CLASSES)
ASCII_FEATURES: tuple[str, ...] = (
    "letters", "digit_runs", "digit_follows", "space_runs", "space_follows", "newlines", "punct_runs",
    "punct_follows",
)
"""ASCII letters; runs of digits, spaces and punctuation, split into the first character of each run and the
characters that follow it (tokenizers merge runs: eight spaces of indentation are one token, not eight)."""
FEATURE_NAMES: tuple[str, ...] = ASCII_FEATURES + LEAD_CLASS_NAMES


def _ascii_table() -> bytes:
    table = bytearray(256)
    for byte in range(256):
        char = chr(byte)
        if byte >= 0x80:
            cls = "x"
        elif char.isdigit():
            cls = "0"
        elif char.isalpha():
            cls = "a"
        elif char in "\r\n":
            cls = "\n"
        elif char.isspace() or byte < 0x20 or byte == 0x7F:
            cls = " "
        else:
            cls = "."
        table[byte] = ord(cls)
    return bytes(table)


def _lead_table() -> bytes:
    table = bytearray(b"?" * 256)
    for cls, lo, hi, _doc in _LEAD_CLASSES:
        for byte in range(lo, hi + 1):
            table[byte] = cls[0]
    return bytes(table)


_ASCII_TABLE = _ascii_table()
_LEAD_TABLE = _lead_table()
_NOT_LEAD = bytes(range(0xC0))  # ASCII and continuation bytes, deleted before counting lead classes
_RUN_TABLE = bytes(1 if chr(b).isdigit() else 2 if b in (0x09, 0x20) else 4 if _ASCII_TABLE[b] == ord(".") else 0
                   for b in range(256))


def text_features(text: str) -> tuple[int, ...]:
    """The heuristic's inputs, in ``FEATURE_NAMES`` order: ASCII class counts, then non-ASCII script counts.

    A handful of C-level passes (encode, translate, count, big-integer bit operations) and no Python loop
    over characters: a few hundred microseconds per 100 KB.
    """
    data = text.encode("utf-8", "surrogatepass")
    classes = data.translate(_ASCII_TABLE)
    digits = classes.count(b"0")
    spaces = classes.count(b" ")
    newlines = classes.count(b"\n")
    punctuation = classes.count(b".")
    if len(data) == len(text):  # pure ASCII: no lead bytes to look at
        non_ascii = 0
        leads: tuple[int, ...] = (0,) * len(_LEAD_CLASSES)
    else:
        lead_bytes = data.translate(_LEAD_TABLE, _NOT_LEAD)
        non_ascii = len(lead_bytes)
        leads = tuple(lead_bytes.count(cls) for cls, _lo, _hi, _doc in _LEAD_CLASSES)
    letters = len(text) - non_ascii - digits - spaces - newlines - punctuation
    digit_follows = space_follows = punct_follows = 0
    if digits or spaces or punctuation:
        # Characters that follow one of their own class, counted as big-integer bit operations: byte i of
        # `marks` is 1 for a digit, 2 for a space, 4 for punctuation; `same` keeps a bit where byte i-1 has it too.
        marks = int.from_bytes(data.translate(_RUN_TABLE), "little")
        same = marks & (marks << 8)
        if same:
            ones = int.from_bytes(b"\x01" * (len(data) + 1), "little")
            digit_follows = (same & ones).bit_count()
            space_follows = ((same >> 1) & ones).bit_count()
            punct_follows = ((same >> 2) & ones).bit_count()
    return (
        letters,
        digits - digit_follows,
        digit_follows,
        spaces - space_follows,
        space_follows,
        newlines,
        punctuation - punct_follows,
        punct_follows,
        *leads,
    )


# Fitted by scripts/calibrate_tokens.py on 2026-11-21 against the exact encodings, every sample of its corpus;
# cross-validated errors per text kind are in docs/tokens.md. Order: FEATURE_NAMES.
_COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "o200k_base": (0.1109, 1.6512, 0.1109, 0.5724, 0.0569, 0.6728, 0.7717, 0.2619, 1.1586, 0.3408, 0.1940, 0.3320,
                   0.2517, 0.2969, 0.0000, 0.9075, 0.6936, 0.8656, 0.5426, 1.2425, 1.6576),
    "cl100k_base": (0.1013, 1.6625, 0.1144, 0.6624, 0.0625, 0.5202, 0.7508, 0.2577, 2.1552, 0.9230, 0.4271, 1.0339,
                    0.7256, 1.0628, 1.1108, 1.0481, 0.9044, 1.2707, 1.0853, 1.7076, 2.1380),
}
_HEURISTIC_ENCODING = {"o200k_base": "o200k_base", "cl100k_base": "cl100k_base", "p50k_base": "cl100k_base",
                       "r50k_base": "cl100k_base"}
"""Which fitted weights estimate each encoding (the old 50k encodings are closest to cl100k_base)."""

# (ASCII factor, non-ASCII factor) applied to the o200k_base estimate for families with no local tokenizer.
# Derived by scripts/calibrate_tokens.py from public statements; unverified here (see docs/tokens.md).
_FAMILY_SCALES: dict[str, tuple[float, float]] = {
    "claude": (1.200, 1.200),  # Claude 3.5 Sonnet vs GPT-4o: +16% English, +21% math, +30% Python; same assumed elsewhere
    "claude_2026": (1.560, 1.200),  # Opus 4.7+ tokenizer: x1.0-1.35 (Anthropic); +20-47% Latin, x1.00 CJK/Cyrillic (others)
    "gemini": (1.071, 1.000),  # Google: 100 tokens ~ 60-80 English words; OpenAI: ~75 words
    "llama": (1.001, 1.426),  # Llama 3 = cl100k's 100k tokens + 28k multilingual ones
    "mistral": (1.001, 1.194),  # Tekken: beats the Llama 3 tokenizer on ~85% of languages
    "qwen": (1.001, 1.000),  # vocabulary grown from cl100k with multilingual, mostly Chinese, tokens
    "deepseek": (1.200, 0.704),  # DeepSeek: 0.3 token per English char (OpenAI: 0.25), 0.6 per Chinese char
    "default": (1.001, 2.033),  # cl100k_base level: the conservative middle for unknown tokenizers
}
_N_ASCII = len(ASCII_FEATURES)
_CLAUDE_VERSION = re.compile(r"claude-(?:opus-|sonnet-|haiku-)?(\d+)(?:[-.](\d)(?!\d))?")
_CLAUDE_NEW_TOKENIZER = (4, 7)
"""Anthropic introduced an updated tokenizer with Claude Opus 4.7; later Claude models are assumed to share it."""


def _claude_scale_key(model: Any) -> str:
    ident, family, _provider, _tokenizer = _model_attrs(model)
    match = _CLAUDE_VERSION.search(f"{family} {ident}")
    if match:
        version = (int(match.group(1)), int(match.group(2) or 0))
        if version >= _CLAUDE_NEW_TOKENIZER:
            return "claude_2026"
    return "claude"


def _estimate(text: str, weights: tuple[float, ...], scale: tuple[float, float]) -> int:
    if not text:
        return 0
    features = text_features(text)
    ascii_part = sum(w * f for w, f in zip(weights[:_N_ASCII], features[:_N_ASCII], strict=True))
    other_part = sum(w * f for w, f in zip(weights[_N_ASCII:], features[_N_ASCII:], strict=True))
    return max(1, int(ascii_part * scale[0] + other_part * scale[1] + 0.5))


@dataclass(frozen=True, slots=True)
class _Counter:
    """How one model's text is counted: a loaded encoding (exact) or weights and a family scale (estimate)."""

    family: str
    method: str
    encoding: tiktoken.Encoding | None
    weights: tuple[float, ...]
    scale: tuple[float, float]

    @property
    def exact(self) -> bool:
        return self.encoding is not None

    def tokens(self, text: str) -> int:
        if self.encoding is not None:
            try:
                return len(self.encoding.encode_ordinary(text))
            except Exception:  # pragma: no cover - tiktoken handles any str; stay total regardless
                log.debug("tiktoken failed on a %d-character text; estimating", len(text), exc_info=True)
        return _estimate(text, self.weights, self.scale)


_COUNTER_MEMO_SIZE = 4096
_MISSING_FILE_RECHECK_S = 5.0
"""A model whose encoding file is not cached is re-checked this often (the file may be added later)."""


def _counter_for(model: ModelSpec | str | None) -> _Counter:
    """The counter for ``model``, memoized per (model attributes, tokenizer environment): resolving the
    encoding hashes its cache path and may ``stat`` a file, which would otherwise dominate short prompts."""
    attrs = _model_attrs(model)
    env = os.environ
    key = (attrs, env.get(TOKENIZER_ENV), env.get("TIKTOKEN_CACHE_DIR"), env.get("DATA_GYM_CACHE_DIR"))
    memo = _REGISTRY.counters
    hit = memo.get(key)
    now = time.monotonic()
    if hit is not None and hit[1] > now:
        return hit[0]
    family, name = _resolve(*attrs)
    forced = _heuristics_forced()
    encoding = None if forced or name is None else _REGISTRY.get(name)
    if encoding is not None:
        counter = _Counter(family, f"tiktoken:{encoding.name}", encoding, (), (1.0, 1.0))
    elif family == "openai":
        weights = _COEFFICIENTS[_HEURISTIC_ENCODING.get(name or "o200k_base", "o200k_base")]
        counter = _Counter(family, "heuristic:openai", None, weights, (1.0, 1.0))
    else:
        scale_key = _claude_scale_key(model) if family == "claude" else family
        counter = _Counter(family, f"heuristic:{family}", None, _COEFFICIENTS["o200k_base"],
                           _FAMILY_SCALES[scale_key])
    final = encoding is not None or forced or name is None
    if len(memo) >= _COUNTER_MEMO_SIZE:
        memo.clear()
    memo[key] = (counter, math.inf if final else now + _MISSING_FILE_RECHECK_S)
    return counter


# =============================================================================================
# Public counting API
# =============================================================================================


def count_text(text: str, model: ModelSpec | str | None = None) -> TokenCount:
    """Tokens in ``text`` for ``model``: exact (``tiktoken:<encoding>``) or estimated (``heuristic:<family>``).

    Special-token strings such as ``<|endoftext|>`` count as ordinary text. Never raises, never downloads.
    """
    counter = _counter_for(model)
    return TokenCount(counter.tokens(_as_text(text)), counter.exact, counter.method)


def estimate_combined_size(texts: Iterable[str], model: ModelSpec | str | None = None) -> TokenCount:
    """Total tokens of several texts (e.g. retrieved documents), each counted on its own."""
    counter = _counter_for(model)
    total = sum(counter.tokens(_as_text(text)) for text in texts)
    return TokenCount(total, counter.exact, counter.method)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


# --- chat messages -----------------------------------------------------------------------------------------

TOKENS_PER_MESSAGE = 3
"""OpenAI's per-message overhead for gpt-3.5-turbo-0125, gpt-4 and the o200k models (OpenAI Cookbook,
"How to count tokens with tiktoken"): ``<|start|>{role}<|message|>…<|end|>`` around every message."""
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
"""Every reply is primed with ``<|start|>assistant<|message|>``."""
TOOL_CALL_OVERHEAD = 8
"""Tokens a tool call adds beyond its name and arguments. OpenAI does not publish this for chat completions;
8 is what its published harmony format (gpt-oss) spends: `` to=functions.`` (4), a space, ``<|constrain|>``,
``json`` and a longer channel name, counted with o200k_base. Calls after the first also open a message."""

# Tool definitions, OpenAI Cookbook "Counting tokens for chat completions with tool calls" (verified there
# against the API: 101 prompt tokens for its example on gpt-4o, 105 on gpt-4).
_TOOLS_FUNC_INIT = {"o200k_base": 7, "cl100k_base": 10}
_TOOLS_PROP_INIT = 3
_TOOLS_PROP_KEY = 3
_TOOLS_ENUM_INIT = -3
_TOOLS_ENUM_ITEM = 3
_TOOLS_FUNC_END = 12
CLAUDE_TOOL_SYSTEM_PROMPT = 346
"""Anthropic adds a tool-use system prompt when tools are present: 346 tokens for Claude 3.5 Sonnet (Oct)
through Claude 4.6 with tool_choice auto or none (Anthropic's tool-use pricing table)."""

IMAGE_TOKENS: dict[str, int] = {"openai": 765, "claude": 1398, "gemini": 1032, "default": 765}
"""Flat per-image estimates, for a 1024×1024 image (the size is unknown without decoding it). OpenAI: 85
plus 170 per 512-px tile at high detail (4 tiles); Anthropic: width × height / 750; Google: 258 per 768-px
tile (4 tiles). Other families use OpenAI's figure."""
IMAGE_TOKENS_LOW_DETAIL = 85
"""OpenAI's fixed cost of an image sent with ``detail: "low"``."""
AUDIO_TOKENS_PER_SECOND: dict[str, int] = {"openai": 10, "gemini": 32, "default": 32}
"""OpenAI: one audio input token per 100 ms; Google: 32 tokens per second. Others: Google's, the higher."""
AUDIO_BYTES_PER_SECOND_FALLBACK = 16_000
"""For compressed audio, whose duration needs decoding: 128 kbit/s, a common MP3 rate."""
FILE_PART_TOKENS = 1500
"""Per page of a file or document part (PDF): Anthropic counts 1,500-3,000 tokens per page. The pages are
counted where the file's bytes show them (``_pdf_pages``); otherwise this is a floor of one page."""
_PDF_PAGE = re.compile(rb"/Type\s{0,8}/Page(?![a-zA-Z])")
_PDF_PAGES_NODE = re.compile(rb"/Type\s{0,8}/Pages\b")
_PDF_COUNT = re.compile(rb"/Count\s{1,8}(\d{1,7})")
_PDF_NODE_WINDOW = 256
_PDF_MAX_NODES = 256
"""Bytes around a page tree node's ``/Type /Pages`` searched for its ``/Count``, and how many nodes are read
(the root, which counts every page, comes early; a real tree has few nodes): the work is bounded whatever the
file (an unbounded ``[^>]*?`` between the two made a crafted file take quadratic time on the event loop)."""


def _pdf_pages(part: Mapping[str, Any]) -> int:
    """Pages of an inline PDF (``file.file_data``, a base64 data URL or bare base64), read off its page
    objects or its page tree's ``/Count`` (the larger); 1 when they are not visible (compressed object
    streams, a ``file_id``, not a PDF)."""
    f = part.get("file") or part.get("source") or {}
    data = f.get("file_data") or f.get("data") if isinstance(f, Mapping) else None
    if not isinstance(data, str) or not data:
        return 1
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=False)
    except ValueError:
        return 1
    if not raw.startswith(b"%PDF"):
        return 1
    counts = [int(c) for node in itertools.islice(_PDF_PAGES_NODE.finditer(raw), _PDF_MAX_NODES)
              for c in _PDF_COUNT.findall(raw, max(0, node.start() - _PDF_NODE_WINDOW), node.end() + _PDF_NODE_WINDOW)]
    return max(1, len(_PDF_PAGE.findall(raw)), max(counts, default=0))


def count_messages(messages: list[dict[str, Any]], model: ModelSpec | str | None = None, *,
                   tools: list[dict[str, Any]] | None = None) -> TokenCount:
    """Prompt tokens of OpenAI-shaped chat messages (and, optionally, tool definitions) for ``model``.

    Follows OpenAI's published formula for tiktoken models: 3 tokens per message, every string field counted
    (role, content, name, tool_call_id), 1 more for ``name``, 3 for the reply priming. Content parts: text is
    counted, images and other media get the flat estimates above. Tool calls count their name and arguments
    plus ``TOOL_CALL_OVERHEAD``. ``tools`` (OpenAI function definitions) follow the Cookbook's formula.

    ``exact`` is True only when an encoding is loaded and the request holds nothing beyond the formula's
    verified cases: text content, names and tool definitions with flat parameter schemas.
    """
    counter = _counter_for(model)
    exact = counter.exact
    total = 0
    if not isinstance(messages, list | tuple):  # be total: a lone message, or something that is not one
        messages, exact = ([] if messages is None else [messages]), False
    for message in messages:
        tokens, message_exact = _message_tokens(message, counter)
        total += tokens
        exact = exact and message_exact
    total += REPLY_PRIMING
    if tools:
        tokens, tools_exact = _tools_tokens(tools, counter, model)
        total += tokens
        exact = exact and tools_exact
    return TokenCount(total, exact, counter.method)


def _message_tokens(message: Any, counter: _Counter) -> tuple[int, bool]:
    if not isinstance(message, Mapping):
        return TOKENS_PER_MESSAGE + counter.tokens(_as_text(message)), False
    total, exact = TOKENS_PER_MESSAGE, True
    for key, value in message.items():
        if value is None:
            continue
        if key == "content":
            tokens, ok = _content_tokens(value, counter)
        elif key == "tool_calls":
            tokens, ok = _tool_calls_tokens(value, counter), False
        elif key == "function_call":  # the legacy single-call field
            tokens, ok = _tool_calls_tokens([{"function": value}], counter), False
        elif isinstance(value, str):
            tokens, ok = counter.tokens(value), key != "tool_call_id"
            if key == "name":
                tokens += TOKENS_PER_NAME
        else:
            tokens, ok = counter.tokens(_json(value)), False
        total += tokens
        exact = exact and ok
    return total, exact


def _content_tokens(content: Any, counter: _Counter) -> tuple[int, bool]:
    if isinstance(content, str):
        return counter.tokens(content), True
    if not isinstance(content, list | tuple):
        return counter.tokens(_as_text(content)), False
    total, text_parts, media = 0, 0, False
    for part in content:
        if isinstance(part, str):
            total += counter.tokens(part)
            text_parts += 1
            continue
        if not isinstance(part, Mapping):
            total += counter.tokens(_as_text(part))
            media = True
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            total += counter.tokens(_as_text(part.get("text")))
            text_parts += 1
        elif kind == "refusal":
            total += counter.tokens(_as_text(part.get("refusal")))
            text_parts += 1
        elif kind in ("image_url", "image", "input_image"):
            total += _image_tokens(part, counter.family)
            media = True
        elif kind == "input_audio":
            total += _audio_tokens(part, counter.family)
            media = True
        elif kind in ("file", "input_file", "document"):
            total += FILE_PART_TOKENS * _pdf_pages(part)
            media = True
        else:
            total += counter.tokens(_json(part))
            media = True
    return total, text_parts <= 1 and not media


def _image_tokens(part: Mapping[str, Any], family: str) -> int:
    image = part.get("image_url")
    detail = image.get("detail") if isinstance(image, Mapping) else part.get("detail")
    if family == "openai" and detail == "low":
        return IMAGE_TOKENS_LOW_DETAIL
    return IMAGE_TOKENS.get(family, IMAGE_TOKENS["default"])


def _audio_tokens(part: Mapping[str, Any], family: str) -> int:
    audio = part.get("input_audio")
    data = audio.get("data") if isinstance(audio, Mapping) else None
    per_second = AUDIO_TOKENS_PER_SECOND.get(family, AUDIO_TOKENS_PER_SECOND["default"])
    if not isinstance(data, str) or not data:
        return per_second  # no payload to size: one second
    size = len(data.rstrip("=")) * 3 // 4
    wav_rate = _wav_byte_rate(data)
    if wav_rate:
        size, rate = max(0, size - _WAV_HEADER_BYTES), wav_rate
    else:
        rate = AUDIO_BYTES_PER_SECOND_FALLBACK
    return max(1, math.ceil(size / rate * per_second))


_WAV_HEADER_BYTES = 44


def _wav_byte_rate(b64: str) -> int | None:
    """The byte rate in a base64 canonical WAV header (RIFF/WAVE, offset 28), or None for other formats."""
    try:
        head = base64.b64decode(b64[:48] + "=" * (-len(b64[:48]) % 4), validate=False)
    except ValueError:
        return None
    if len(head) >= 32 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        rate = int.from_bytes(head[28:32], "little")
        return rate or None
    return None


def _tool_calls_tokens(tool_calls: Any, counter: _Counter) -> int:
    if not isinstance(tool_calls, list | tuple):
        return counter.tokens(_json(tool_calls))
    total = 0
    for index, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            total += counter.tokens(_json(call))
            continue
        arguments = function.get("arguments")
        total += TOOL_CALL_OVERHEAD + counter.tokens(_as_text(function.get("name")))
        total += counter.tokens(arguments if isinstance(arguments, str) else _json(arguments))
        if index:
            total += TOKENS_PER_MESSAGE
    return total


def _tools_tokens(tools: Any, counter: _Counter, model: Any) -> tuple[int, bool]:
    """The Cookbook's formula for function definitions; nested schemas add their JSON and make it inexact."""
    encoding_name = counter.encoding.name if counter.encoding is not None else encoding_name_for(model)
    if not isinstance(tools, list | tuple):
        return counter.tokens(_json(tools)), False
    total, exact = 0, True
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping):
            total += counter.tokens(_json(tool))
            exact = False
            continue
        total += _TOOLS_FUNC_INIT.get(encoding_name or "", _TOOLS_FUNC_INIT["o200k_base"])
        description = _strip_period(_as_text(function.get("description")))
        total += counter.tokens(f"{_as_text(function.get('name'))}:{description}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if isinstance(properties, Mapping) and properties:
            total += _TOOLS_PROP_INIT
            for key, schema in properties.items():
                total += _TOOLS_PROP_KEY
                if not isinstance(schema, Mapping):
                    total += counter.tokens(f"{key}:{_json(schema)}")
                    exact = False
                    continue
                enum = schema.get("enum")
                if isinstance(enum, list | tuple):
                    total += _TOOLS_ENUM_INIT
                    total += sum(_TOOLS_ENUM_ITEM + counter.tokens(_as_text(item)) for item in enum)
                kind = schema.get("type", "")
                kind_text = kind if isinstance(kind, str) else _json(kind)
                description = _strip_period(_as_text(schema.get("description", "")))
                total += counter.tokens(f"{key}:{kind_text}:{description}")
                nested = {k: v for k, v in schema.items() if k not in ("type", "description", "enum")}
                if nested:
                    total += counter.tokens(_json(nested))
                    exact = False
    total += _TOOLS_FUNC_END
    if counter.family == "claude":
        total += CLAUDE_TOOL_SYSTEM_PROMPT
    return total, exact


def _strip_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return _as_text(value)
