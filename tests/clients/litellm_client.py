"""Drives the server through LiteLLM's image_generation, the server configured as an OpenAI-compatible
provider (model "openai/<id>", api_base), and prints what came back as JSON.

    python litellm_client.py BASE_URL MODEL_ID
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the price list

import litellm
from PIL import Image


def main() -> None:
    base, model = sys.argv[1], sys.argv[2]
    # No response_format: LiteLLM refuses it for models it does not know as DALL-E; the server answers a
    # JSON client (the OpenAI SDK under LiteLLM sends Accept: application/json) with b64_json anyway.
    answer = litellm.image_generation(
        model=f"openai/{model}", prompt="a windmill", api_base=f"{base}/v1", api_key="not-used", n=2, size="64x64"
    )
    images = [Image.open(io.BytesIO(base64.b64decode(item.b64_json))) for item in answer.data]
    print(json.dumps({"images": [[image.format, *image.size] for image in images]}))


if __name__ == "__main__":
    main()
