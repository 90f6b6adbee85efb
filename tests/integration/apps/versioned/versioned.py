"""A test app whose answer names its version; ``fail_ratio`` makes it answer 500 on that
share of requests (a broken release a rollout must catch)."""

import os
import random

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.5})
class Versioned:
    def __init__(self, answer: str, fail_ratio: float):
        self.answer = answer
        self.fail_ratio = fail_ratio
        self.node = os.environ.get("HEADWAY_NODE_NAME", "?")

    async def __call__(self, request: Request) -> JSONResponse:
        if random.random() < self.fail_ratio:
            return JSONResponse({"error": "broken release", "version": self.answer}, status_code=500)
        return JSONResponse({"version": self.answer, "node": self.node})


def build(args: dict) -> serve.Application:
    return Versioned.bind(str(args.get("answer", "v1")), float(args.get("fail_ratio", 0)))
