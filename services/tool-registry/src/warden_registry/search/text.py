"""From a tool to the text that is searched: words for BM25, a passage for the embedder.

A tool is its name, its description and its JSON input schema. The name is split into
words (`get_stock_price`, `npmVersions`, `lol-summoner-search`); the schema gives the
parameter names and descriptions (one level of nesting, array items included) and enum
values. Lexical tokens are lower-case ASCII words with a light suffix stemmer, plus CJK
characters and their bigrams, so a Chinese query can match a Chinese description.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["ToolText", "describe_tool", "lexical_tokens", "split_identifier"]

_MAX_PARAMS = 40
_MAX_DESCRIPTION = 2000
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[_\-./:]+")
_WORD = re.compile(r"[a-z0-9]+|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_SPACES = re.compile(r"\s+")
# Words that carry no meaning in a tool search ("a tool to get the ..."); kept short on purpose.
_STOP = frozenset(
    "a an and are as at be by can do does for from get how i if in into is it its me my of on or "
    "our show that the their them then there these this to tool use using what when where which "
    "who whose will with you your".split()
)


def split_identifier(name: str) -> str:
    """`get_stockPrice-by.date` -> `get stock Price by date` (case kept)."""
    return _SPACES.sub(" ", _CAMEL.sub(" ", _SEPARATORS.sub(" ", name))).strip()


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A conservative suffix stripper: plurals, -ing, -ed. Numbers and short words stay."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) > 5:
        return word[:-3]
    if word.endswith("ed") and len(word) > 4:
        return word[:-2]
    return word


def lexical_tokens(text: str) -> list[str]:
    """Tokens for BM25: identifiers split, lower-cased, stop words out, stemmed; CJK 1+2-grams."""
    text = unicodedata.normalize("NFKC", split_identifier(text)).lower()
    out: list[str] = []
    for word in _WORD.findall(text):
        if word[0] >= "\u3040":  # a run of CJK (the pattern's other branch is ASCII only)
            out.extend(word)
            out.extend(word[i : i + 2] for i in range(len(word) - 1))
        elif word not in _STOP:
            out.append(_stem(word))
    return out


def _schema_params(schema: Any) -> Iterator[tuple[str, str]]:
    """(name, description + enum values) for each parameter, one nesting level deep."""
    if not isinstance(schema, Mapping):
        return
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return
    for count, (name, spec) in enumerate(props.items()):
        if count >= _MAX_PARAMS:
            return
        if not isinstance(spec, Mapping):
            yield str(name), ""
            continue
        parts = [str(spec.get("description") or spec.get("title") or "")]
        enum = spec.get("enum")
        if isinstance(enum, list):
            parts.append(" ".join(str(v) for v in enum[:20]))
        yield str(name), " ".join(p for p in parts if p)
        inner = spec.get("items") if spec.get("type") == "array" else spec
        if isinstance(inner, Mapping) and isinstance(inner.get("properties"), Mapping):
            for sub, sub_spec in list(inner["properties"].items())[:_MAX_PARAMS]:
                desc = sub_spec.get("description", "") if isinstance(sub_spec, Mapping) else ""
                yield f"{name}.{sub}", str(desc or "")


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class ToolText:
    """What is searched of one tool."""

    name_words: str
    description: str
    params: tuple[tuple[str, str], ...]

    def lexical(self) -> list[str]:
        """BM25 tokens; the name counts twice, being the most telling text a tool has."""
        name = lexical_tokens(self.name_words)
        text = " ".join([self.description, *(f"{n} {d}" for n, d in self.params)])
        return name + name + lexical_tokens(text)

    def passage(self) -> str:
        """The text the embedder sees: name words, description, then parameters."""
        parts = [f"{self.name_words}: {self.description}" if self.description else self.name_words]
        if self.params:
            parts.append(
                "Parameters: "
                + "; ".join(f"{split_identifier(n)}: {d}" if d else split_identifier(n) for n, d in self.params)
            )
        return " ".join(parts)


def describe_tool(name: str, description: str | None, input_schema: Any) -> ToolText:
    """The searchable text of a tool. `name` may carry a registry prefix (`alias__tool`)."""
    short = name.split("__", 1)[-1]
    return ToolText(
        name_words=split_identifier(short),
        description=_clean(description or "")[:_MAX_DESCRIPTION],
        params=tuple((n, _clean(d)) for n, d in _schema_params(input_schema)),
    )
