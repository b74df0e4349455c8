"""The Search-R3 prompts, shared by the app's runtime and by ``training/``.

A model's prompts travel inside its GGUF as metadata under ``sr3.`` (written by
``training.export``); models without them get the paper's stage-1 prompt. The
embedding is the final-layer state at :data:`EMBED_TOKEN`, so a document prompt
ends exactly at that token: nothing after it could change the state (causal
attention), and stopping there saves work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.sandbox

EMBED_TOKEN = "<|embed_token|>"
# What the model is asked to write before the token; also what is appended when a
# reasoning model fails to emit the token within its budget.
ANSWER_PREFIX = "The embedding is "
FORCED_SUFFIX = f"{ANSWER_PREFIX}{EMBED_TOKEN}."

STAGE1_SYSTEM = "Please represent user queries."
REASON_SYSTEM = (
    "Please represent user queries. First analyse briefly what the user is looking "
    "for, then end with: The embedding is <|embed_token|>."
)

# GGUF metadata keys written by the exporter and read by the runtime.
KEY_VERSION = "sr3.version"
KEY_EMBED_TOKEN = "sr3.embed_token"
KEY_DOCUMENT_SYSTEM = "sr3.prompt.document.system"
KEY_QUERY_SYSTEM = "sr3.prompt.query.system"
KEY_REASON_SYSTEM = "sr3.prompt.reason.system"
KEY_ANSWER_PREFIX = "sr3.prompt.answer_prefix"
KEY_MODEL_NAME = "sr3.model.name"
KEY_MODEL_STAGE = "sr3.model.stage"  # "base", "sft" or "rl"
KEY_EVAL = "sr3.eval"  # JSON: held-out metrics of this model and of BM25
METADATA_VERSION = 1

# ChatML, the template of Qwen2.5 and SmolLM2, for models that carry none.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class PromptSet:
    """The system prompts and answer prefix a model was trained with."""

    document_system: str = STAGE1_SYSTEM
    query_system: str = STAGE1_SYSTEM
    reason_system: str = REASON_SYSTEM
    answer_prefix: str = ANSWER_PREFIX
    embed_token: str = EMBED_TOKEN
    from_metadata: bool = field(default=False, compare=False)

    def to_metadata(self) -> dict[str, str]:
        """Return the ``sr3.`` string keys that describe these prompts."""
        return {
            KEY_EMBED_TOKEN: self.embed_token,
            KEY_DOCUMENT_SYSTEM: self.document_system,
            KEY_QUERY_SYSTEM: self.query_system,
            KEY_REASON_SYSTEM: self.reason_system,
            KEY_ANSWER_PREFIX: self.answer_prefix,
        }

    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any]) -> PromptSet:
        """Read prompts from GGUF metadata; stage-1 defaults for missing keys."""
        present = any(k.startswith("sr3.prompt.") for k in meta)
        default = cls()
        return cls(
            document_system=str(meta.get(KEY_DOCUMENT_SYSTEM, default.document_system)),
            query_system=str(meta.get(KEY_QUERY_SYSTEM, default.query_system)),
            reason_system=str(meta.get(KEY_REASON_SYSTEM, default.reason_system)),
            answer_prefix=str(meta.get(KEY_ANSWER_PREFIX, default.answer_prefix)),
            embed_token=str(meta.get(KEY_EMBED_TOKEN, default.embed_token)),
            from_metadata=present,
        )


def forced_tail(reasoning: str, answer_prefix: str = ANSWER_PREFIX) -> str:
    """Text appended after ``reasoning`` (then the embed token) when the model did not emit it.

    The answer prefix, separated by a space from the reasoning; only the missing
    space when the reasoning already ends with the prefix. Shared by the runtime
    and RL training so both read the state after the same tokens.

    >>> forced_tail("Looks for sorting.")
    ' The embedding is '
    >>> forced_tail("Sorting. The embedding is")
    ' '
    >>> forced_tail("")
    'The embedding is '
    """
    stripped = reasoning.rstrip()
    if stripped.endswith(answer_prefix.rstrip()):
        # The model wrote the answer prefix itself and ran out of budget right there.
        return " " if answer_prefix.endswith(" ") and not reasoning.endswith(" ") else ""
    sep = "" if not reasoning or reasoning[-1].isspace() else " "
    return sep + answer_prefix


def messages(system: str, text: str) -> list[dict[str, str]]:
    """Return the chat messages for one input: a system turn and a user turn."""
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


class ChatTemplate:
    """A model's own Jinja chat template, rendered the way transformers does."""

    def __init__(self, template: str | None, bos_token: str = "", eos_token: str = "") -> None:
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        self.source = template or CHATML_TEMPLATE
        self._template = env.from_string(self.source)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, msgs: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render messages to the prompt text, ending with the assistant header."""
        return self._template.render(
            messages=msgs,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )

    def document_prompt(self, prompts: PromptSet, text: str) -> str:
        """Prompt for a document: ends exactly at the embed token."""
        head = self.render(messages(prompts.document_system, text))
        return head + prompts.answer_prefix + prompts.embed_token

    def query_prompt(self, prompts: PromptSet, text: str) -> str:
        """Prompt for a query without reasoning: ends exactly at the embed token."""
        head = self.render(messages(prompts.query_system, text))
        return head + prompts.answer_prefix + prompts.embed_token

    def reason_prompt(self, prompts: PromptSet, text: str) -> str:
        """Prompt for a query with reasoning: ends at the assistant header."""
        return self.render(messages(prompts.reason_system, text))


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def eval_metadata(metrics: Mapping[str, Any]) -> str:
    """Serialise held-out evaluation figures for the ``sr3.eval`` key."""
    return json.dumps(dict(metrics), sort_keys=True)


__all__ = [
    "ANSWER_PREFIX",
    "EMBED_TOKEN",
    "FORCED_SUFFIX",
    "ChatTemplate",
    "PromptSet",
    "eval_metadata",
    "forced_tail",
    "messages",
]
