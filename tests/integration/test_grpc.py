"""gRPC through a service's endpoint (examples/grpc): both workers' Serve gRPC proxies
answer through the one endpoint, HTTP beside it on the same port, the token guards both,
and a head killed under gRPC load fails no call."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import httpx
from google.protobuf.wrappers_pb2 import StringValue

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _hello(channel: grpc.Channel):
    return channel.unary_unary(
        "/hello.Greeter/Hello",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )


def test_grpc_and_http_through_one_endpoint_the_token_guards_both_and_a_head_kill_fails_no_call(cli):
    cli.services.append("greeter")
    cli.run("deploy", "-f", str(EXAMPLES / "grpc" / "service.yaml"), check=True)
    st = cli.status("greeter")
    url = st["endpoint"]
    token = cli.run("token", "greeter", check=True).stdout.strip()
    meta = (("authorization", f"Bearer {token}"),)
    workers = {n["name"] for n in st["nodes"] if n["role"] == "worker"}

    with grpc.insecure_channel(url.removeprefix("http://")) as channel:  # HTTP/2 in clear
        hello = _hello(channel)
        deadline = time.monotonic() + 60  # the gRPC proxies start a moment after the HTTP ones
        while True:
            try:
                hello(StringValue(value="ann"), metadata=meta, timeout=10)
                break
            except grpc.RpcError as exc:
                assert time.monotonic() < deadline, f"no gRPC answer through the endpoint: {exc}"
                time.sleep(0.5)
        answers = {hello(StringValue(value="ann"), metadata=meta, timeout=15).value for _ in range(30)}
        assert answers == {f"hello ann from {w}" for w in workers}, answers  # both workers' gRPC proxies
        try:
            hello(StringValue(value="eve"), timeout=15)
            raise AssertionError("a call without the token was answered")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
    http = httpx.get(url + "/?name=bob", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert http.json()["hello"] == "bob"  # HTTP on the same port, to the same deployment

    stop, ok, failed = threading.Event(), [0], []

    def load() -> None:
        with grpc.insecure_channel(url.removeprefix("http://")) as ch:
            call = _hello(ch)
            while not stop.is_set():
                try:
                    call(StringValue(value="load"), metadata=meta, timeout=10)
                    ok[0] += 1
                except grpc.RpcError as exc:
                    failed.append(f"{exc.code()}: {exc.details()}")
                time.sleep(0.02)

    clients = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in clients:
        t.start()
    try:
        time.sleep(2)
        killed_at = cli.crash("greeter", "head")
        running = cli.wait_event("greeter", "state", after=killed_at, state="RUNNING", timeout=180)
        time.sleep(2)
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=30)
    after = running["at"] - killed_at
    print(f"\ngRPC through a head kill: RUNNING {after:.1f} s after; {ok[0]} calls, {len(failed)} failed")
    assert ok[0] > 50 and failed == [], failed[:5]
    cli.run("terminate", "greeter", check=True)
