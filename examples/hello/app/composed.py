"""Model composition: an ingress deployment (FastAPI) that calls a second deployment
through a handle, one replica of each per worker."""

import os

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

api = FastAPI()


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.25})
class Greeter:
    def __init__(self, greeting: str):
        self.greeting = greeting

    def greet(self) -> dict:
        return {"greeting": self.greeting, "greeter_node": os.environ.get("HEADWAY_NODE_NAME", "?")}


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress:
    def __init__(self, greeter: DeploymentHandle):
        self.greeter = greeter

    @api.get("/")
    async def root(self) -> dict:
        reply = await self.greeter.greet.remote()
        return {**reply, "ingress_node": os.environ.get("HEADWAY_NODE_NAME", "?"), "pid": os.getpid()}


def build(args: dict) -> serve.Application:
    return Ingress.bind(Greeter.bind(args.get("greeting", "hello")))
