"""Sentiment of a text, from a model that lives in a third-party package.

POST the text (or GET ?text=...): the reply is the label, VADER's scores and the node
that answered.
"""

import os

from ray import serve
from starlette.requests import Request
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

MAX_TEXT = 10_000


@serve.deployment(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.25})
class Sentiment:
    def __init__(self) -> None:
        self.model = SentimentIntensityAnalyzer()  # loads its lexicon from the package

    async def __call__(self, request: Request) -> dict:
        text = request.query_params.get("text") or (await request.body()).decode(errors="replace")
        scores = self.model.polarity_scores(text[:MAX_TEXT])
        compound = scores["compound"]
        label = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
        return {"label": label, "scores": scores, "node": os.environ.get("HEADWAY_NODE_NAME", "?")}


app = Sentiment.bind()
