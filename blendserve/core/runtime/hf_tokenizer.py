"""A Hugging Face tokenizer behind the runtime Tokenizer protocol: chat through the model's own template."""

from __future__ import annotations


class HFTokenizer:
    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer

    def encode_text(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: list[dict]) -> list[int]:
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.encode_text(text)  # the rendered template already holds the special tokens
