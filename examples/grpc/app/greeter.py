"""A gRPC service on Ray Serve, with no generated code: protobuf's own ``StringValue``
carries the name in and the greeting out.

``add_GreeterServicer_to_server`` is what ``protoc`` would generate for::

    service Greeter { rpc Hello (google.protobuf.StringValue) returns (google.protobuf.StringValue); }

Serve's gRPC proxy imports it (``grpc_options.grpc_servicer_functions``) to learn the
methods and their message types, and sends each call to the deployment method of the
same name. A client calls ``/hello.Greeter/Hello`` with the endpoint's token as
``authorization: Bearer …`` metadata.
"""

from __future__ import annotations

import os

import grpc
from google.protobuf.wrappers_pb2 import StringValue
from ray import serve
from starlette.requests import Request


def add_GreeterServicer_to_server(servicer, server) -> None:  # noqa: N802 - protoc's name
    handlers = {
        "Hello": grpc.unary_unary_rpc_method_handler(
            servicer.Hello,
            request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("hello.Greeter", handlers),))


@serve.deployment(num_replicas=2, max_replicas_per_node=1)
class Greeter:
    def __init__(self) -> None:
        self.node = os.environ.get("HEADWAY_NODE_NAME", "?")

    def Hello(self, request: StringValue) -> StringValue:  # noqa: N802 - the gRPC method's name
        return StringValue(value=f"hello {request.value} from {self.node}")

    async def __call__(self, request: Request) -> dict:
        return {"hello": request.query_params.get("name", "world"), "node": self.node}


app = Greeter.bind()
