"""Model composition: a FastAPI ingress that calls two deployments through handles,
passing the first one's answer to the second without waiting for it in between.

    POST /analyze {"text": "..."}  →  word count, the most frequent words, who answered
    GET  /                         →  what the service offers
"""

import os
from collections import Counter

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from ray import serve
from ray.serve.handle import DeploymentHandle

MAX_TEXT = 100_000
api = FastAPI(title="composed")


class Text(BaseModel):
    text: str
    top: int = 3


def _node() -> str:
    return os.environ.get("HEADWAY_NODE_NAME", "?")


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.2})
class Tokenizer:
    def tokenize(self, text: str) -> dict:
        words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
        return {"words": [w for w in words if w], "tokenizer_node": _node()}


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.2})
class Stats:
    def count(self, tokens: dict, top: int) -> dict:
        counts = Counter(tokens["words"])
        return {
            "words": len(tokens["words"]),
            "distinct": len(counts),
            "top": [[w, n] for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
            "tokenizer_node": tokens["tokenizer_node"],
            "stats_node": _node(),
        }


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.2})
@serve.ingress(api)
class Ingress:
    def __init__(self, tokenizer: DeploymentHandle, stats: DeploymentHandle) -> None:
        self.tokenizer = tokenizer
        self.stats = stats

    @api.get("/")
    def root(self) -> dict:
        return {"service": "composed", "routes": ["POST /analyze"]}

    @api.post("/analyze")
    async def analyze(self, body: Text) -> dict:
        if len(body.text) > MAX_TEXT or not 1 <= body.top <= 100:
            raise HTTPException(422, f"text of at most {MAX_TEXT} characters and top between 1 and 100")
        tokens = self.tokenizer.tokenize.remote(body.text)  # handed on unresolved: no wait here
        result = await self.stats.count.remote(tokens, body.top)
        return {**result, "ingress_node": _node()}


app = Ingress.bind(Tokenizer.bind(), Stats.bind())
