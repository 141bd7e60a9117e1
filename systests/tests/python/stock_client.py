"""Drives a Volley dispatcher with Python's stock gRPC library at its default settings.

Usage: stock_client.py STUBS_DIR HOST:PORT

Registers an echo function, submits 80 tasks of 120 KB (about 9.6 MB in all) with
ExecuteBatch, reads every result back through WatchResults with the default 4 MiB receive
limit, lists the services by reflection in both v1alpha and v1, and asks the health
service. Prints one JSON line of what it saw; exits non-zero on the first failure.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402
from volley.v1 import dispatcher_pb2 as pb  # noqa: E402
from volley.v1 import dispatcher_pb2_grpc as rpc  # noqa: E402

TASKS = 80
ARG_BYTES = 120 * 1024
PER_REQUEST = 20  # 2.4 MB per ExecuteBatch, under the server's 4 MiB


def list_services(channel, method):
    """Lists services through one reflection version; v1 and v1alpha share message shapes."""
    call = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    return sorted(s.name for r in replies for s in r.list_services_response.service)


def main():
    channel = grpc.insecure_channel(sys.argv[2])  # default options: 4 MiB receive limit
    stub = rpc.DispatcherStub(channel)
    fid = stub.RegisterFunction(
        pb.RegisterFunctionRequest(name="echo", spec=pb.FunctionSpec(echo=pb.Echo())), timeout=10
    ).function_id

    args = [json.dumps("%04d" % i + "x" * (ARG_BYTES - 6)) for i in range(TASKS)]
    ids = []
    for start in range(0, TASKS, PER_REQUEST):
        reqs = [pb.ExecuteRequest(function_id=fid, args=a) for a in args[start:start + PER_REQUEST]]
        ids.extend(stub.ExecuteBatch(pb.ExecuteBatchRequest(tasks=reqs), timeout=30).task_ids)

    results, messages, largest = {}, 0, 0
    for msg in stub.WatchResults(pb.WatchResultsRequest(task_ids=ids), timeout=60):
        messages += 1
        largest = max(largest, msg.ByteSize())
        for t in msg.tasks:
            if t.task_id in results:
                raise SystemExit("task %d reported twice" % t.task_id)
            results[t.task_id] = t
    expected = dict(zip(ids, args))
    if set(results) != set(ids):
        raise SystemExit("%d of %d results came back" % (len(results), len(ids)))
    for tid, t in results.items():
        if t.state != pb.TASK_STATE_COMPLETED or t.result != expected[tid]:
            raise SystemExit("task %d: state %d, result of %d bytes" % (tid, t.state, len(t.result)))
    result_bytes = sum(len(t.result) for t in results.values())

    v1alpha = list_services(channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    v1 = list_services(channel, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    health = health_pb2_grpc.HealthStub(channel)
    overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
    dispatcher = health.Check(health_pb2.HealthCheckRequest(service="volley.v1.Dispatcher"), timeout=10).status

    print(json.dumps({
        "tasks": len(results),
        "result_bytes": result_bytes,
        "messages": messages,
        "largest_message_bytes": largest,
        "reflection_v1alpha": v1alpha,
        "reflection_v1": v1,
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(overall),
        "health_dispatcher": health_pb2.HealthCheckResponse.ServingStatus.Name(dispatcher),
    }))


if __name__ == "__main__":
    main()
