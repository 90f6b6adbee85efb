"""A streaming response: tokens sent one at a time as server-sent events, the way a
text generator answers.

    GET /generate?prompt=...&tokens=N&delay=S  →  text/event-stream, one event per token,
                                                  then "data: [DONE]"
"""

import asyncio
import json
import os

from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse
from ray import serve

api = FastAPI(title="streaming")
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "the",
    "service",
    "keeps",
    "serving",
]


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Generator:
    @api.get("/generate")
    def generate(
        self,
        prompt: str = Query("", max_length=1000),
        tokens: int = Query(8, ge=1, le=200),
        delay: float = Query(0.1, ge=0, le=2),
    ) -> StreamingResponse:
        node = os.environ.get("HEADWAY_NODE_NAME", "?")

        async def events():
            for i in range(tokens):
                word = WORDS[(len(prompt) + i) % len(WORDS)]
                yield f"data: {json.dumps({'index': i, 'token': word, 'node': node})}\n\n"
                await asyncio.sleep(delay)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


app = Generator.bind()
