"""What an image request may be: the body's schema, and the checks that need the loaded model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from .pipeline import ImageGenerator

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**32 - 1


def _whole_float_to_int(value: Any) -> Any:
    # JSON Schema's integer includes 8.0; strict pydantic would refuse it, and nothing else.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as JSON Schema has it: 8 and 8.0, not "8", not true. After the constraints in an
# Annotated, so that they stay on the integer and in the OpenAPI document.
WHOLE = BeforeValidator(_whole_float_to_int)


# The OpenAI Images API (https://platform.openai.com/docs/api-reference/images/create, and the
# official Python SDK's openai/types/image_generate_params.py, 3.57): which of its fields this server
# honours, maps, ignores or refuses is in OPENAI_FIELDS' descriptions and the README.
OPENAI_REFERENCE = "https://platform.openai.com/docs/api-reference/images/create"
# `quality` as denoising steps: more steps, finer detail, longer to make. auto and standard: the server's default.
QUALITY_STEPS = {"low": 15, "medium": 25, "high": 50, "hd": 50, "xhigh": 75, "max": 100}
SIZE = r"^([0-9]+x[0-9]+|auto)$"


class GenerationRequest(BaseModel):
    # Python's regular expressions for `pattern`, so "whitespace" means what str.strip() strips.
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True, regex_engine="python-re")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"\S", description="Not blank")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    steps: Annotated[int, Field(ge=1, le=150), WHOLE] | None = Field(
        None, description="Denoising steps (default: from quality, else the server's SD_DEFAULT_STEPS)"
    )
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    seed: Annotated[int, Field(ge=0, le=MAX_SEED), WHOLE] | None = Field(
        None, description="Random when absent; with n images, image i gets seed + i. Returned in X-Seed"
    )
    width: Annotated[int, Field(ge=8, le=4096, multiple_of=8), WHOLE] | None = Field(
        None, description="Must equal the compiled model's width when given"
    )
    height: Annotated[int, Field(ge=8, le=4096, multiple_of=8), WHOLE] | None = Field(
        None, description="Must equal the compiled model's height when given"
    )
    response_format: Literal["png", "jpeg", "webp", "b64_json", "url"] | None = Field(
        None,
        description="The image as PNG, JPEG or WebP bytes, or JSON with it base64-encoded (b64_json) or as a "
        "data: URL (url; this server hosts no files). Default: from Accept (image/png, image/jpeg, image/webp, "
        "application/json; PNG when none is asked for)",
    )
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        None, description="The encoding inside b64_json or url (default png); must agree with response_format otherwise"
    )
    # --- the rest of the OpenAI Images API ---
    model: str | None = Field(None, max_length=256, description="The served model's id or an alias (GET /v1/models)")
    n: Annotated[int, Field(ge=1, le=10), WHOLE] = Field(
        1, description="Images to make, in one batch; at most the server's SD_MAX_BATCH_SIZE. Above 1, a JSON answer"
    )
    size: str | None = Field(
        None, pattern=SIZE, description="WIDTHxHEIGHT, or auto: the one size the compiled model makes"
    )
    quality: Literal["auto", "standard", "low", "medium", "high", "hd", "xhigh", "max"] | None = Field(
        None,
        description="As denoising steps when steps is not given: low 15, medium 25, high and hd 50, xhigh 75, max 100",
    )
    output_compression: Annotated[int, Field(ge=0, le=100), WHOLE] | None = Field(
        None, description="JPEG or WebP quality for this request (0-100); not for PNG"
    )
    background: Literal["auto", "opaque", "transparent"] | None = Field(
        None, description="auto and opaque; transparent is refused (Stable Diffusion draws no alpha channel)"
    )
    moderation: Literal["low", "auto"] | None = Field(
        None, description="low only: this server applies no content moderation, so auto is refused"
    )
    style: Literal["vivid", "natural"] | None = Field(
        None, description="Refused: a DALL-E 3 setting with no equivalent; describe the style in the prompt"
    )
    stream: bool | None = Field(None, description="false only: the image comes back whole")
    partial_images: Annotated[int, Field(ge=0, le=3), WHOLE] | None = Field(
        None, description="0 only: there is no stream of partial images"
    )
    complexity: Literal["low", "medium", "high"] | None = Field(
        None, description="Accepted and ignored: Stable Diffusion has no planning stage"
    )
    safety_identifier: str | None = Field(None, max_length=256, description="Accepted, echoed, not used")
    user: str | None = Field(None, max_length=256, description="Accepted, not used (the deprecated safety_identifier)")


def openai_refusal(body: GenerationRequest) -> tuple[str, str] | None:
    """The (param, reason) of an OpenAI field value this server cannot honour without misleading, or None."""
    refusals = (
        ("style", body.style is not None, "has no equivalent in Stable Diffusion; describe the style in the prompt"),
        (
            "background",
            body.background == "transparent",
            "transparent is not possible: the model draws no alpha channel",
        ),
        (
            "moderation",
            body.moderation == "auto",
            "this server applies no content moderation; use low, or leave it out",
        ),
        ("stream", bool(body.stream), "streaming is not supported: the image comes back whole"),
        ("partial_images", bool(body.partial_images), "partial images need streaming, which is not supported"),
    )
    for param, refused, reason in refusals:
        if refused:
            return param, f"{param}: {reason}"
    return None


class ErrorDetail(BaseModel):
    """The OpenAI API's error object, which the OpenAI SDKs parse; our fields are its fields."""

    type: str = Field(
        description="Machine-readable kind: invalid_request, model_not_found, queue_full, timeout, not_ready, draining, ..."
    )
    message: str = Field(description="What went wrong, for a person")
    param: str | None = Field(description="The request field at fault, where one is")
    code: str | None = Field(description="A finer machine-readable reason, where there is one")


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class FormRequest(BaseModel):
    """The form route's fields (all text on the wire): the same constraints as GenerationRequest; an
    empty number field is an absent one."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, regex_engine="python-re")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"\S", description="Not blank")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    # Absent or empty, never null: a form has no null.
    steps: Annotated[int, Field(ge=1, le=150)] | SkipJsonSchema[None] = Field(
        None, description="Denoising steps (default: the server's SD_DEFAULT_STEPS)", json_schema_extra=_no_default
    )
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | SkipJsonSchema[None] = Field(
        None, description="Random when absent; returned in X-Seed", json_schema_extra=_no_default
    )

    @field_validator("steps", "seed", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if value == "" else value


def _location(error: Any) -> str:
    return ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "form"))


def validation_message(errors: list[Any]) -> str:
    """pydantic's errors as one line: `field: reason; field: reason`."""
    return "; ".join(f"{_location(error) or 'body'}: {error.get('msg', 'invalid')}" for error in errors)


def validation_param(errors: list[Any]) -> tuple[str | None, str | None]:
    """The first error's field and pydantic's kind for it (the OpenAI error's param and code)."""
    if not errors:
        return None, None
    return _location(errors[0]) or None, str(errors[0].get("type")) or None


def model_mismatch(body: GenerationRequest, generator: ImageGenerator) -> tuple[str, str] | None:
    """The (param, reason) why the loaded model cannot serve this request (image size, prompt length), or None."""
    compiled = f"{generator.width}x{generator.height}"
    if body.size not in (None, "auto", compiled):
        return "size", f"size: the model is compiled for {compiled}; sizes it makes: {compiled}, auto; got {body.size}"
    for name, given in (("width", body.width), ("height", body.height)):
        if given is not None and given != getattr(generator, name):
            return name, f"{name}: the model is compiled for {compiled}; got {name} {given}"
    for name, text in (("prompt", body.prompt), ("negative_prompt", body.negative_prompt)):
        tokens = generator.prompt_tokens(text) if text else 0
        if tokens > generator.max_prompt_tokens:
            return name, f"{name}: {tokens} tokens; the text encoder takes at most {generator.max_prompt_tokens}"
    return None
