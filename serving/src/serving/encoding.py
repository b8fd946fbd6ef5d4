"""What an image is sent as: PNG, JPEG or WebP bytes, or JSON around them; chosen per request.

`response_format` decides when given; otherwise the Accept header does, by its q-values (ties go to
the type listed first), and PNG when it names none of ours. Encoding is CPU work of tens of
milliseconds for PNG and WebP at 512x512 (a few for JPEG): the routes run it on the thread pool,
never on the model thread.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

from .settings import Settings

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# What an Accept entry may ask for, and what it gets.
ACCEPTED = {**{media: name for name, media in MEDIA_TYPES.items()}, "application/json": "json", "image/*": "png"}


@dataclasses.dataclass(frozen=True)
class Answer:
    image_format: str  # png, jpeg or webp
    as_json: bool
    as_url: bool = False  # in JSON, as a data: URL rather than b64_json


class FormatConflict(ValueError):
    pass


def _accepted(accept: str) -> list[tuple[float, int, str]]:
    """(q, -position, what) for each Accept entry we can answer; unknown types and q=0 left out."""
    entries = []
    for position, part in enumerate(accept.split(",")):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        what = ACCEPTED.get(media.lower())
        if what is None:
            continue
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            entries.append((q, -position, what))
    return entries


def negotiate(response_format: str | None, output_format: str | None, accept: str) -> Answer:
    """The answer's format. FormatConflict when output_format contradicts response_format."""
    if response_format is not None and response_format not in ("b64_json", "url"):
        if output_format is not None and output_format != response_format:
            raise FormatConflict(
                f"output_format: {output_format} contradicts response_format {response_format}; "
                "output_format is the encoding inside b64_json"
            )
        return Answer(response_format, as_json=False)
    if response_format in ("b64_json", "url"):
        return Answer(output_format or "png", as_json=True, as_url=response_format == "url")
    entries = _accepted(accept)
    best = max(entries)[2] if entries else "png"
    if best == "json":
        return Answer(output_format or "png", as_json=True)
    return Answer(output_format or best, as_json=False)


def encode(image: Any, image_format: str, settings: Settings, quality: int | None = None) -> bytes:
    """The PIL image as PNG, JPEG or WebP, at the qualities the settings give (or `quality`, 0-100, for
    JPEG and WebP: the OpenAI API's output_compression)."""
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, format="PNG", compress_level=settings.png_compress_level)
    elif image_format == "jpeg":
        # Pillow's JPEG scale is 1-95 in practice: above 95 it stops compressing and only grows.
        jpeg_quality = settings.jpeg_quality if quality is None else min(95, max(1, quality))
        image.convert("RGB").save(buffer, format="JPEG", quality=jpeg_quality)
    elif image_format == "webp":
        image.save(buffer, format="WEBP", quality=settings.webp_quality if quality is None else quality)
    else:
        raise ValueError(f"unknown image format {image_format!r}")
    return buffer.getvalue()
