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


class GenerationRequest(BaseModel):
    # Python's regular expressions for `pattern`, so "whitespace" means what str.strip() strips.
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True, regex_engine="python-re")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"\S", description="Not blank")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    steps: Annotated[int, Field(ge=1, le=150), WHOLE] | None = Field(
        None, description="Denoising steps (default: the server's SD_DEFAULT_STEPS)"
    )
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    seed: Annotated[int, Field(ge=0, le=MAX_SEED), WHOLE] | None = Field(
        None, description="Random when absent; returned in X-Seed"
    )
    width: Annotated[int, Field(ge=8, le=4096, multiple_of=8), WHOLE] | None = Field(
        None, description="Must equal the compiled model's width when given"
    )
    height: Annotated[int, Field(ge=8, le=4096, multiple_of=8), WHOLE] | None = Field(
        None, description="Must equal the compiled model's height when given"
    )
    response_format: Literal["png", "jpeg", "webp", "b64_json"] | None = Field(
        None,
        description="The image as PNG, JPEG or WebP bytes, or JSON with it base64-encoded (b64_json). "
        "Default: from Accept (image/png, image/jpeg, image/webp, application/json; PNG when none is asked for)",
    )
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        None, description="The encoding inside b64_json (default png); must agree with response_format otherwise"
    )


class ErrorDetail(BaseModel):
    type: str = Field(
        description="Machine-readable kind: invalid_request, queue_full, timeout, not_ready, draining, ..."
    )
    message: str = Field(description="What went wrong, for a person")


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


def validation_message(errors: list[Any]) -> str:
    """pydantic's errors as one line: `field: reason; field: reason`."""
    parts = []
    for error in errors:
        location = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "form"))
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def model_mismatch(body: GenerationRequest, generator: ImageGenerator) -> str | None:
    """Why the loaded model cannot serve this request (image size, prompt length), or None."""
    for name, given in (("width", body.width), ("height", body.height)):
        if given is not None and given != getattr(generator, name):
            return f"{name}: the model is compiled for {generator.width}x{generator.height}; got {name} {given}"
    for name, text in (("prompt", body.prompt), ("negative_prompt", body.negative_prompt)):
        tokens = generator.prompt_tokens(text) if text else 0
        if tokens > generator.max_prompt_tokens:
            return f"{name}: {tokens} tokens; the text encoder takes at most {generator.max_prompt_tokens}"
    return None
