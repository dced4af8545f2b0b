"""The floor of the gRPC front: the same grpc server setup as the PDP (thread pool, health,
reflection), with a Decide/DecideBatch handler that answers a fixed decision without deciding."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc

_REPLY = pb.DecideResponse(decision=pb.Decision(outcome=pb.ALLOW, bundle_revision="noop"))


class NoopServicer(pdp_pb2_grpc.DecisionServiceServicer):  # type: ignore[misc]
    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        return _REPLY

    def DecideBatch(
        self, request: pb.DecideBatchRequest, context: grpc.ServicerContext
    ) -> pb.DecideBatchResponse:
        return pb.DecideBatchResponse(decisions=[_REPLY.decision] * len(request.intents))


class AioNoopServicer(pdp_pb2_grpc.DecisionServiceServicer):
    """The same answers from coroutines, for a grpc.aio server (`--aio`)."""

    async def Decide(
        self, request: pb.DecideRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DecideResponse:
        return _REPLY

    async def DecideBatch(
        self, request: pb.DecideBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DecideBatchResponse:
        return pb.DecideBatchResponse(decisions=[_REPLY.decision] * len(request.intents))


async def serve_aio(listen: str) -> None:
    server = grpc.aio.server()
    pdp_pb2_grpc.add_DecisionServiceServicer_to_server(AioNoopServicer(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(listen)
    await server.start()
    print(f"noop serving on {listen} (grpc.aio)", flush=True)
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:50099")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument(
        "--processes", type=int, default=1, help="processes sharing the port, like pdp serve --workers"
    )
    p.add_argument("--aio", action="store_true", help="a grpc.aio server, handlers on its event loop")
    args = p.parse_args()
    if args.aio:
        asyncio.run(serve_aio(args.listen))
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    pdp_pb2_grpc.add_DecisionServiceServicer_to_server(NoopServicer(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(args.listen)
    server.start()
    others = [
        subprocess.Popen([sys.executable, "-m", "bench.noop_server", "--listen", args.listen])
        for _ in range(args.processes - 1)
    ]
    print(f"noop serving on {args.listen}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for other in others:
        other.terminate()
        other.wait()
    server.stop(1)


if __name__ == "__main__":
    main()
