"""A Serve app whose every request holds its replica a while (as a model would), so that
the number of requests in flight — what Serve's autoscaling follows — grows with the load."""

import asyncio
import os

from ray import serve
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Work:
    def __init__(self, seconds: float = 0.2):
        self.seconds = seconds
        self.node = os.environ.get("HEADWAY_NODE_NAME", "?")

    async def __call__(self, request: Request) -> dict:
        await asyncio.sleep(self.seconds)
        return {"node": self.node, "pid": os.getpid()}


def build(args: dict) -> serve.Application:
    return Work.bind(float(args.get("seconds", 0.2)))
