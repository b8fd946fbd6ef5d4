"""Drives the server with the official OpenAI Python SDK, as a user would with base_url set, and prints
what came back as one JSON object (tests/serving/test_openai_clients.py asserts on it).

    python openai_python.py BASE_URL MODEL_ID
"""

from __future__ import annotations

import base64
import io
import json
import sys
from typing import Any

import openai
from PIL import Image


def image_facts(item: Any) -> dict[str, Any]:
    if item.url is not None:
        header, _, data = item.url.partition(",")
        raw, source = base64.b64decode(data), header
    else:
        raw, source = base64.b64decode(item.b64_json), "b64_json"
    image = Image.open(io.BytesIO(raw))
    return {"source": source, "format": image.format, "size": list(image.size), "seed": getattr(item, "seed", None)}


def refusal(call: Any) -> dict[str, Any]:
    try:
        call()
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        return {"exception": type(error).__name__, "status": error.status_code, "error": body}
    return {"exception": None}


def main() -> None:
    base, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-used", max_retries=0, timeout=300)
    results: dict[str, Any] = {"sdk": openai.__version__}
    results["models"] = [m.id for m in client.models.list().data]
    results["model"] = client.models.retrieve(model).id
    plain = client.images.generate(prompt="a lighthouse at dusk")
    results["plain"] = [image_facts(item) for item in plain.data or []]
    for n in (2, 4):
        answer = client.images.generate(model=model, prompt="a red barn", size="64x64", n=n, response_format="b64_json")
        results[f"n{n}"] = {"images": [image_facts(item) for item in answer.data or []], "size": answer.size}
    for response_format in ("b64_json", "url"):
        for output_format in ("png", "jpeg", "webp"):
            answer = client.images.generate(
                model=model, prompt="a blue lake", size="auto", response_format=response_format,
                output_format=output_format, quality="low", extra_body={"seed": 7},
            )  # fmt: skip
            key = f"{response_format}-{output_format}"
            results[key] = {
                "images": [image_facts(i) for i in answer.data or []],
                "output_format": answer.output_format,
            }
    results["unknown_model"] = refusal(lambda: client.images.generate(model="dall-e-3", prompt="x"))
    results["unsupported_size"] = refusal(lambda: client.images.generate(model=model, prompt="x", size="1024x1024"))
    results["style"] = refusal(lambda: client.images.generate(model=model, prompt="x", style="vivid"))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
