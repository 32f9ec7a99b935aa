"""Settings, read once at the edge (env prefix BLENDSERVE_) and passed down frozen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

RuntimeKind = Literal["local", "simulated", "sglang-http", "sglang-gateway", "sglang-engine", "none"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BLENDSERVE_", frozen=True, extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None  # default: SQLite file inside data_dir
    api_keys: Annotated[tuple[str, ...], NoDecode] = ()  # comma-separated; empty = open server

    max_file_bytes: int = 200 * 1024 * 1024
    max_file_lines: int = 50_000
    max_batch_errors: int = 1_000  # errors.data entries kept for a failed validation

    runtime: RuntimeKind = "local"
    model_path: str | None = None  # local: HF dir or GGUF; sglang-engine: model path
    model_name: str | None = None  # served model name override
    sglang_url: str = "http://127.0.0.1:30000"  # sglang-gateway: the smg gateway's URL (docs/SCALE-OUT.md)
    sglang_info_timeout_s: float = 5.0  # each SGLang info/health/abort call; start-up never waits longer per try
    sglang_tokenize_timeout_s: float = 30.0  # each /v1/tokenize call (two tries, then a retryable error)
    tokenizer_path: str | None = None  # sglang: the model's HF tokenizer dir (exact logprob bytes; Engine too)
    chat_template: str | None = None  # sglang-engine: a .jinja file, as SGLang's --chat-template
    gpu: str = "h100"  # perf-model preset for simulated/sglang runtimes

    dispatcher: bool = True
    lease_seconds: float = 15.0
    request_timeout_s: float = 600.0
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    local_batch_size: int = 16
    model_cache_dir: Path = Path.home() / ".cache" / "blendserve" / "models"
    simulated_time_scale: float = 0.0
    max_inflight: int | None = None  # cap on requests in flight on the runtime (default: the runtime's own)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'blendserve.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
