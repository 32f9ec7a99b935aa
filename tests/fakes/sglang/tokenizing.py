"""SGLang 0.5.23's /v1/tokenize with a real tokenizer and its Jinja chat template (the embedded SmolLM2 one).

Two modes for messages (srt/entrypoints/openai/protocol.py:1744-1792, serving_tokenize.py:93-135):
- add_generation_prompt omitted: rendered as for a chat completion: a trailing assistant message becomes a
  user message (serving_chat.py:513-549), the template runs with add_generation_prompt=True, the text is
  encoded without special tokens when the tokenizer adds them itself (serving_chat.py:2180-2195);
- add_generation_prompt given: rendered as given with that flag, encoded with add_special_tokens only when the
  request names it; with a built-in (non-Jinja) template this is a 400 (serving_tokenize.py:100-107).
A prompt is encoded with add_special_tokens (default true). Errors are SGLang's ErrorResponse objects."""

from __future__ import annotations

from fastapi.responses import JSONResponse


def error(message: str, status: int = 400, err_type: str = "BadRequestError") -> JSONResponse:
    """SGLang's OpenAI-side error shape (srt/entrypoints/openai/serving_base.py:205-221)."""
    body = {"object": "error", "message": message, "type": err_type, "param": None, "code": status}
    return JSONResponse(body, status_code=status)


class Tokenize:
    def __init__(self, tokenizer, context_len: int, builtin_template: str | None = None) -> None:
        self.tok, self.context_len, self.builtin_template = tokenizer, context_len, builtin_template
        self.auto_adds_specials = len(tokenizer.encode("")) > 0

    def chat_completion_ids(self, messages: list[dict]) -> list[int]:
        messages = [dict(m) for m in messages]
        if messages and messages[-1].get("role") == "assistant" and isinstance(messages[-1].get("content"), str):
            messages[-1] = {"role": "user", "content": messages[-1]["content"]}
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        kwargs = {"add_special_tokens": False} if self.auto_adds_specials else {}
        return list(self.tok.encode(text, **kwargs))

    def _as_given_ids(self, body: dict) -> list[int]:
        if self.builtin_template is not None:
            raise ValueError("add_generation_prompt is supported only with a Jinja chat template.")
        text = self.tok.apply_chat_template(
            body["messages"], add_generation_prompt=bool(body["add_generation_prompt"]), tokenize=False
        )
        special = "add_special_tokens" in body and bool(body["add_special_tokens"])
        kwargs = {"add_special_tokens": special} if self.auto_adds_specials or special else {}
        return list(self.tok.encode(text, **kwargs))

    def handle(self, body: object) -> JSONResponse:
        if not isinstance(body, dict) or ("prompt" in body) == ("messages" in body):
            return error("Exactly one of 'prompt' or 'messages' must be provided.")
        try:
            if "messages" in body:
                if body.get("add_generation_prompt") is not None:
                    tokens = self._as_given_ids(body)
                else:
                    tokens = self.chat_completion_ids(body["messages"])
                count = len(tokens)
            elif isinstance(body["prompt"], str):
                tokens = self.tok.encode(body["prompt"], add_special_tokens=body.get("add_special_tokens", True))
                count = len(tokens)
            elif isinstance(body["prompt"], list):
                tokens = [
                    self.tok.encode(t, add_special_tokens=body.get("add_special_tokens", True)) for t in body["prompt"]
                ]
                count = [len(t) for t in tokens]
            else:
                return error(f"Invalid prompt type: {type(body['prompt'])}. Expected str or List[str].")
        except ValueError as exc:
            return error(str(exc))
        except Exception as exc:  # template errors on odd messages are 400s in SGLang too
            return error(f"{type(exc).__name__}: {exc}")
        return JSONResponse({"tokens": tokens, "count": count, "max_model_len": self.context_len})
