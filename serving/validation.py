"""What an image request may be: the body's schema, and the checks that need the loaded model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .pipeline import ImageGenerator

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**32 - 1


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    steps: int | None = Field(
        None, ge=1, le=150, description="Denoising steps (default: the server's SD_DEFAULT_STEPS)"
    )
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Random when absent; returned in X-Seed")
    width: int | None = Field(None, description="Must equal the compiled model's width when given")
    height: int | None = Field(None, description="Must equal the compiled model's height when given")
    response_format: Literal["png", "b64_json"] | None = Field(
        None, description="Default: from Accept (image/png unless JSON is asked for)"
    )


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
