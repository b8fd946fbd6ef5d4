"""What a queued generation job is: the SQS message's JSON, the prompts it names, where its images go.

A message holds one job: a prompt (with `n` images of it), or `prompts_uri`, an S3 object of JSON
Lines with many. Every image of a job has a fixed S3 key and a fixed seed, both derived from the job's
id, so a job that runs twice (a worker died, the message came back) writes the same images over the
same keys: redelivery overwrites, it never adds. `result.json` beside them says the job is complete.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .artefacts import S3_URI, S3Object
from .pipeline import BatchKey, ImageRequest
from .validation import MAX_PROMPT_CHARS, MAX_SEED

# One job holds at most this many images: its images are held in memory only one batch at a time,
# but a job is one message, and SQS gives a message at most 12 hours of visibility.
MAX_IMAGES_PER_JOB = 10_000
JOB_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
RESULT_NAME = "result.json"
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class InvalidJob(ValueError):
    """The message can never run as it is: retrying it cannot help."""


class PromptsUnreadable(RuntimeError):
    """The job's prompts object could not be read now (missing, denied, S3 unreachable): worth a retry."""


class PromptLine(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"\S")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None


class JobMessage(BaseModel):
    """The body of a job message (JSON)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    id: str | None = Field(
        None, pattern=JOB_ID, description="Names the job's output folder; default: the SQS message id"
    )
    prompt: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"\S")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    n: Annotated[int, Field(ge=1, le=MAX_IMAGES_PER_JOB)] = 1
    prompts_uri: str | None = Field(None, pattern=S3_URI.pattern, description="s3://bucket/key of JSON Lines")
    steps: Annotated[int, Field(ge=1, le=150)] | None = None
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    output_format: Literal["png", "jpeg", "webp"] = "png"

    @model_validator(mode="after")
    def one_source(self) -> JobMessage:
        if (self.prompt is None) == (self.prompts_uri is None):
            raise ValueError("give exactly one of prompt and prompts_uri")
        if self.prompts_uri is not None and (self.n != 1 or self.negative_prompt or self.seed is not None):
            raise ValueError("n, negative_prompt and seed go on each line of prompts_uri, not beside it")
        return self


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())


def parse_message(body: str) -> JobMessage:
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidJob(f"the message body is not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(document, dict):
        raise InvalidJob(f"the message body must be a JSON object, not {type(document).__name__}")
    try:
        return JobMessage.model_validate(document)
    except ValidationError as error:
        raise InvalidJob(_problems(error)) from None


def derived_seed(job_id: str, index: int) -> int:
    """The seed of a job's image when the job gives none: the same on every delivery of the job."""
    digest = hashlib.sha256(f"{job_id}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (MAX_SEED + 1)


def read_prompt_lines(client: Any, uri: str, limit: int = MAX_IMAGES_PER_JOB) -> list[PromptLine]:
    """The prompts object's lines. InvalidJob for content that is wrong; PromptsUnreadable where S3
    did not answer with it."""
    from botocore.exceptions import BotoCoreError, ClientError

    source = S3Object.parse(uri, "prompts_uri")
    try:
        text = client.get_object(Bucket=source.bucket, Key=source.key)["Body"].read().decode("utf-8")
    except (ClientError, BotoCoreError) as error:
        raise PromptsUnreadable(f"prompts_uri {uri}: {error}") from None
    except UnicodeDecodeError:
        raise InvalidJob(f"prompts_uri {uri}: not UTF-8 text") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(PromptLine.model_validate_json(line))
        except ValidationError as error:
            raise InvalidJob(f"prompts_uri {uri} line {number}: {_problems(error)}") from None
        if len(lines) > limit:
            raise InvalidJob(f"prompts_uri {uri}: more than {limit} prompts in one job")
    if not lines:
        raise InvalidJob(f"prompts_uri {uri}: no prompts")
    return lines


class Job:
    """A received job: its images (seeded, keyed) and what is done of them."""

    def __init__(
        self, job_id: str, message: JobMessage, prompts: list[PromptLine], output: S3Object, default_steps: int
    ) -> None:
        self.id = job_id
        self.message = message
        self.key = BatchKey(message.steps or default_steps, message.guidance_scale)
        self.folder = f"{output.key}{job_id}/"
        self.bucket = output.bucket
        self.requests: list[ImageRequest] = []
        for line in prompts:
            for copy in range(message.n):
                index = len(self.requests)
                seed = line.seed + copy if line.seed is not None else derived_seed(job_id, index)
                self.requests.append(ImageRequest(line.prompt, line.negative_prompt, seed % (MAX_SEED + 1)))
        self.written: set[int] = set()

    @classmethod
    def of(cls, message_id: str, body: JobMessage, output: S3Object, default_steps: int, client: Any) -> Job:
        job_id = body.id or message_id
        if body.prompt is not None:
            prompts = [PromptLine(prompt=body.prompt, negative_prompt=body.negative_prompt, seed=body.seed)]
        else:
            assert body.prompts_uri is not None
            prompts = read_prompt_lines(client, body.prompts_uri, MAX_IMAGES_PER_JOB // body.n)
        return cls(job_id, body, prompts, output, default_steps)

    def image_key(self, index: int) -> str:
        return f"{self.folder}{index:05d}.{EXTENSIONS[self.message.output_format]}"

    @property
    def result_key(self) -> str:
        return f"{self.folder}{RESULT_NAME}"

    @property
    def complete(self) -> bool:
        return len(self.written) == len(self.requests)

    def result(self, message_id: str, receive_count: int, worker: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": "succeeded",
            "images": [
                {"key": self.image_key(i), "prompt": r.prompt, "seed": r.seed} for i, r in enumerate(self.requests)
            ],
            "steps": self.key.steps,
            "guidance_scale": self.key.guidance_scale,
            "output_format": self.message.output_format,
            "message_id": message_id,
            "receive_count": receive_count,
            "worker": worker,
        }
