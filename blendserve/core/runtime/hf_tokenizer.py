"""A Hugging Face tokenizer behind the runtime Tokenizer protocol, producing the ids SGLang 0.5.23 computes.

- text (completions, embeddings): `tokenizer(text)` with the tokenizer's default special tokens, as SGLang's
  tokenizer manager encodes a text prompt (srt/managers/tokenizer_manager.py:1063-1066).
- chat: as a chat completion is rendered (srt/entrypoints/openai/serving_chat.py:2154-2330): a trailing
  assistant message becomes a user message (`_handle_last_assistant_message`, :513-549), the template runs
  with add_generation_prompt=True, and the text is encoded without special tokens when the tokenizer would
  add them itself (no double BOS, :456-465).
A template that rejects the messages (jinja `raise_exception`, a type error) is a per-line error."""

from __future__ import annotations

from pathlib import Path

from blendserve.core.runtime.base import UnsupportedParameter


def load_chat_template(value: str | None) -> str | None:
    """SGLang's --chat-template for a Jinja file (or inline Jinja); built-in template names are not rendered
    here, so they are refused at start rather than tokenized differently from the server."""
    if not value:
        return None
    if "{%" in value or "{{" in value:
        return value
    path = Path(value)
    if path.suffix == ".jinja" and path.is_file():
        return path.read_text()
    raise ValueError(f"chat template {value!r}: give a .jinja file (built-in SGLang template names are not supported)")


class HFTokenizer:
    def __init__(self, tokenizer, chat_template: str | None = None) -> None:
        self.tok = tokenizer
        self.template_kwargs = {"chat_template": chat_template} if chat_template is not None else {}
        try:
            self._auto_adds_specials = len(self.tok.encode("")) > 0
        except Exception:  # as SGLang: assume it does
            self._auto_adds_specials = True

    def encode_text(self, text: str) -> list[int]:
        return list(self.tok(text)["input_ids"])

    def render_chat(self, messages: list[dict]) -> str:
        messages = [dict(m) for m in messages]
        if messages and messages[-1].get("role") == "assistant" and isinstance(messages[-1].get("content"), str):
            messages[-1] = {"role": "user", "content": messages[-1]["content"]}
        try:
            return self.tok.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, **self.template_kwargs
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise UnsupportedParameter(f"The chat template rejects these messages: {exc}", param="messages") from exc
        except Exception as exc:  # jinja2.TemplateError and raise_exception() in templates
            if type(exc).__module__.startswith("jinja2"):
                raise UnsupportedParameter(f"The chat template rejects these messages: {exc}", "messages") from exc
            raise

    def encode_chat(self, messages: list[dict]) -> list[int]:
        text = self.render_chat(messages)
        kwargs = {"add_special_tokens": False} if self._auto_adds_specials else {}
        return list(self.tok.encode(text, **kwargs))
