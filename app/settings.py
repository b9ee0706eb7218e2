"""Service settings, from the environment (prefix ``TTC_``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.prm_format import PrmFormat, PrmFormatName, prm_format
from ttc_serve.models.replicas import Routing
from ttc_serve.models.revision_format import RevisionFormat, validate_revision_template
from ttc_serve.router.selection import AnswerMatch

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
# medium is the default budget's size, each step up four times the one below
REASONING_EFFORT_SAMPLES: dict[ReasoningEffort, float] = {
    "none": 1, "minimal": 1, "low": 2, "medium": 4, "high": 16, "xhigh": 64, "max": 256}

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "models" / "embedded" / "checkpoints"
EMBEDDED_POLICY = EMBEDDED_DIR.parent / "policy.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTC_", env_file=".env", extra="ignore",
                                      env_parse_none_str="none")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model_name: str = Field("ttc-arith", description="the model id clients send and /v1/models lists")
    api_key: str | None = Field(None, description="if set, clients must send 'Authorization: Bearer <key>'")

    # Backends: leave the URLs unset to start the embedded vLLM CPU servers as child processes.
    generator_url: str | None = None
    prm_url: str | None = None
    generator_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="several generator replicas, comma-separated (instead of "
                                          "TTC_GENERATOR_URL); every call of a request goes to one")
    prm_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="several PRM replicas, comma-separated (instead of TTC_PRM_URL)")
    replica_routing: Routing = Field(
        "affinity", description="affinity: each request's calls go to one replica (rendezvous hashing of "
                                "its id, so the replica's prefix cache serves its later rounds); "
                                "round_robin: call by call")
    generator_dir: Path = EMBEDDED_DIR / "generator-small"  # HF config for FLOPs, chat template
    prm_dir: Path = EMBEDDED_DIR / "prm"
    generator_served_name: str = "generator"
    prm_served_name: str = "prm"
    backend_api_key: str | None = None
    max_model_len: int = Field(640, ge=16, le=1_048_576, description=(
        "the embedded servers' context; for a backend that does not say its own (/v1/models) and is "
        "not set below, assumed"))
    generator_max_model_len: int | None = Field(None, ge=16, le=1_048_576)
    prm_max_model_len: int | None = Field(None, ge=16, le=1_048_576)
    prm_format: PrmFormatName = Field(
        "embedded", description="how the PRM wants a solution shown (models/prm_format.py): embedded, "
                                "qwen2.5-math-prm or math-shepherd")
    prm_step_tag: str | None = Field(None, description="the PRM's step tag; unset: its format's")
    step_delimiter: str = "\n"
    answer_match: AnswerMatch = Field(
        "exact", description="how votes compare final answers: exact strings, or math (math-verify: "
                             "'0.5' and '\\frac{1}{2}' count as one answer; pip install 'ttc-serve[math]')")
    # The generator's revise prompt layout (models/revision_format.py); unset: the generator
    # checkpoint's own, from its tokenizer_config.json, else question first.
    revision_template: str | None = Field(
        None, description="revise prompt with {prompt} and {attempts}, e.g. '{prompt}{attempts}revision:\\n'")
    revision_attempt_prefix: str | None = Field(None, description="written before each attempt")
    revision_check: bool = Field(
        True, description="revisions check and repair where the generator checkpoint has a check "
                          "form (models/check_format.py); false: they always use the revise prompt")
    backend_timeout_s: float = Field(120.0, gt=0, le=3600)
    backend_connect_timeout_s: float = Field(5.0, gt=0, le=600)
    backend_start_timeout_s: float = Field(240.0, gt=0, le=3600)
    health_interval_s: float = Field(1.0, gt=0, le=60, description=(
        "how often the backends' /health is checked; two failures in a row mark one down"))
    generator_cpu_bind: str = "0"  # embedded servers: keep generator and PRM on separate cores
    prm_cpu_bind: str = "1"

    # strategy="auto": the calibrated policy (TTC_POLICY_PATH=none: best-of-N for every prompt)
    policy_path: Path | None = Field(EMBEDDED_POLICY, description="policy JSON from `ttc-serve calibrate`")
    difficulty_samples: int | None = Field(None, ge=1, le=64,
                                           description="override the policy's predictor sample count")

    # Requests
    default_flops_budget: float | None = Field(
        None, gt=0, description="used when a request names none; unset: what four PRM-scored samples of "
                                "default_max_tokens cost on the deployed models (app/wiring.py)")
    max_flops_budget: float = Field(1e18, gt=0)
    reasoning_effort_samples: dict[ReasoningEffort, float] = Field(
        default_factory=lambda: dict(REASONING_EFFORT_SAMPLES),
        description="reasoning_effort -> FLOPs budget, in PRM-scored samples of default_max_tokens on "
                    "the deployed models (as the default budget); efforts left out keep these defaults")
    default_max_tokens: int = Field(128, ge=1, description="per sample, when a request sets none")
    default_temperature: float = Field(0.8, ge=0, le=2)
    max_samples_per_call: int = Field(256, ge=1, le=4096)
    request_timeout_s: float = Field(120.0, gt=0, le=3600)
    max_in_flight: int = Field(64, ge=1, description="concurrent requests before 429")
    max_request_bytes: int = Field(4 * 2**20, ge=1024, description="request bodies over this are a 413")
    max_header_bytes: int = Field(64 * 2**10, ge=4096, description="a request's headers over this are "
                                  "refused before the app sees them (431/400 from the HTTP server)")
    header_timeout_s: float = Field(10.0, gt=0, le=600, description=(
        "the longest a connection may take to send a request's line and headers before it is closed"))
    body_timeout_s: float = Field(30.0, gt=0, le=600, description=(
        "the longest wait for the next part of a request body before a 408"))
    drain_timeout_s: float = Field(30.0, gt=0, le=3600, description=(
        "on SIGTERM, how long in-flight requests may still run before they are cancelled"))

    @field_validator("generator_urls", "prm_urls", mode="before")
    @classmethod
    def _url_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @model_validator(mode="after")
    def _one_way_per_role(self) -> Settings:
        for role in ("generator", "prm"):
            if getattr(self, f"{role}_url") and getattr(self, f"{role}_urls"):
                raise ValueError(f"set TTC_{role.upper()}_URL or TTC_{role.upper()}_URLS, not both")
        return self

    def backend_urls(self) -> tuple[list[str], list[str]]:
        """The generator's and the PRM's replica URLs; an empty list: that role is embedded."""
        def urls(one: str | None, many: list[str]) -> list[str]:
            return list(many) or ([one] if one else [])
        return urls(self.generator_url, self.generator_urls), urls(self.prm_url, self.prm_urls)

    @field_validator("reasoning_effort_samples")
    @classmethod
    def _reasoning_effort(cls, value: dict[ReasoningEffort, float]) -> dict[ReasoningEffort, float]:
        if any(samples <= 0 for samples in value.values()):
            raise ValueError("TTC_REASONING_EFFORT_SAMPLES: every effort needs a positive sample count")
        return {**REASONING_EFFORT_SAMPLES, **value}

    @field_validator("step_delimiter")
    @classmethod
    def _step_delimiter(cls, value: str) -> str:
        if not value:
            raise ValueError("TTC_STEP_DELIMITER must not be empty: it splits a solution into the steps "
                             "that the PRM scores and search extends (e.g. a newline)")
        return value

    @field_validator("revision_template")
    @classmethod
    def _revision_template(cls, value: str | None) -> str | None:
        return None if value is None else validate_revision_template(value)

    def revision_format(self) -> RevisionFormat:
        """The revise prompt layout: what is set here over the generator checkpoint's own."""
        own = RevisionFormat.from_model_dir(self.generator_dir) or RevisionFormat()
        return RevisionFormat(
            self.revision_template or own.template,
            own.attempt_prefix if self.revision_attempt_prefix is None else self.revision_attempt_prefix)

    def prm(self) -> PrmFormat:
        """The PRM's input format, with the step tag set here over its family's."""
        return prm_format(self.prm_format, self.prm_step_tag)

    def check_format(self) -> CheckFormat | None:
        """The generator checkpoint's check form, unless revisions are set not to use it."""
        return CheckFormat.from_model_dir(self.generator_dir) if self.revision_check else None
