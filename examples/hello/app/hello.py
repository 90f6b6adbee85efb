"""A small Serve app whose reply says which node answered."""

import os

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.5})
class Hello:
    def __init__(self, greeting: str = "hello"):
        self.greeting = greeting
        self.node = os.environ.get("HEADWAY_NODE_NAME", "?")
        self.node_ip = ray._private.worker.global_worker.node_ip_address
        self.node_id = ray.get_runtime_context().get_node_id()

    async def __call__(self, request: Request) -> dict | JSONResponse:
        if request.url.path.rstrip("/").endswith("/missing"):  # a page that is not there: a 404
            return JSONResponse({"detail": "not found", "node": self.node}, status_code=404)
        return {
            "message": f"{self.greeting} from {self.node}",
            "node": self.node,
            "node_ip": self.node_ip,
            "node_id": self.node_id,
            "pid": os.getpid(),
        }


app = Hello.bind()


def build(args: dict) -> serve.Application:
    return Hello.bind(args.get("greeting", "hello"))
