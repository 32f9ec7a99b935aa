"""Settings, read once at the edge (env prefix BLENDSERVE_) and passed down frozen."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

RuntimeKind = Literal["local", "simulated", "sglang-http", "sglang-gateway", "sglang-engine", "none"]


class WebhookEndpointSetting(BaseModel):
    """One receiver: batch events are POSTed to `url`, signed with `secret` (`whsec_` + base64)."""

    model_config = {"frozen": True}

    url: str
    secret: str

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str) -> str:
        if not value.startswith("whsec_"):
            raise ValueError("a webhook secret starts with 'whsec_'")
        try:
            key = base64.b64decode(value[len("whsec_") :], validate=True)
        except binascii.Error as exc:
            raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc
        if len(key) < 16:
            raise ValueError("a webhook secret needs at least 16 bytes of key")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BLENDSERVE_", frozen=True, extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None  # default: SQLite file inside data_dir
    api_keys: Annotated[tuple[str, ...], NoDecode] = ()  # comma-separated; empty = open server
    # Other names lines may use for the served model: "gpt-4o-mini=SmolLM2-135M-Instruct,alias2=served".
    model_aliases: Annotated[dict[str, str], NoDecode] = {}
    # Webhook endpoints per API key, JSON: {"<api key>": [{"url": ..., "secret": "whsec_..."}]}; on an open
    # server (no API keys) use the key "*".
    webhooks: dict[str, tuple[WebhookEndpointSetting, ...]] = {}
    webhook_first_retry_s: float = 5.0  # retries back off exponentially from here ...
    webhook_max_retry_delay_s: float = 6 * 3600.0  # ... to at most this between tries ...
    webhook_retry_window_s: float = 72 * 3600.0  # ... for up to this long after the event
    webhook_timeout_s: float = 10.0
    webhook_poll_s: float = 0.2  # how often the sender looks for due deliveries (one indexed query)

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

    # API worker processes on one port (`serve --workers`); one of them dispatches (docs/ARCHITECTURE.md)
    workers: int = 1
    # Set by `serve --workers` for its worker processes, not by hand: the worker holding a flock on this file
    # dispatches, and publishes the served model's names next to it for the others.
    worker_lock_file: Path | None = None
    log_level: str = "info"  # `serve --log-level` overrides
    api_threads: int = 8  # threads for the API handlers' database calls (bench/load.py, Postgres: 2 slower, 8 = 32)
    dispatcher: bool = True
    lease_seconds: float = 15.0
    request_timeout_s: float = 600.0
    breaker_failure_threshold: int = 3  # consecutive retryable runtime failures that pause dispatch
    probe_interval_s: float = 1.0  # first runtime health probe after a pause (doubling up to max_probe_interval_s)
    max_probe_interval_s: float = 5.0
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    local_batch_size: int = 16
    model_cache_dir: Path = Path.home() / ".cache" / "blendserve" / "models"
    simulated_time_scale: float = 0.0
    max_inflight: int | None = None  # cap on requests in flight on the runtime (default: the runtime's own)
    # decode pacing (core/sched/pacing.py): right for SGLang, whose steps run prefill/decode operators in sequence
    pace_decode: bool = True

    log_format: Literal["text", "json"] = "text"  # json: one object per line, with the request id

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _split_aliases(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
            if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
                raise ValueError("model_aliases is a comma-separated list of alias=served-model pairs")
            return {a.strip(): m.strip() for a, m in pairs}
        return value

    def served_names(self, model: str) -> tuple[str, ...]:
        """The served model's own name and every alias configured for it."""
        return (model, *sorted(a for a, target in self.model_aliases.items() if target == model))

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'blendserve.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
