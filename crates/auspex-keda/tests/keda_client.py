#!/usr/bin/env python3
"""KEDA's side of the external-scaler protocol, written apart from auspex: Python grpcio with
stubs generated here from the .proto (grpcio-tools' protoc), so auspex's Rust server is
checked by a client that shares none of its code.

usage: keda_client.py PROTO_DIR HOST:PORT < calls.json > results.json

calls.json is a list of {"method": "IsActive" | "StreamIsActive" | "GetMetricSpec" |
"GetMetrics", "name": ..., "namespace": ..., "metadata": {...}, "metricName": ...}; the answer
is one entry per call, {"ok": {...}} or {"error": {"code": "INVALID_ARGUMENT", "details": ...}}.
StreamIsActive reads the stream's first message (or its error) and cancels it.
"""

import importlib
import json
import shutil
import sys
import tempfile

import grpc
from grpc_tools import protoc


def stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="auspex-keda-stubs-")
    rc = protoc.main(
        [
            "protoc",
            f"-I{proto_dir}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "externalscaler.proto",
        ]
    )
    if rc != 0:
        sys.exit(f"protoc failed on {proto_dir}/externalscaler.proto: exit {rc}")
    sys.path.insert(0, out)
    try:
        return (
            importlib.import_module("externalscaler_pb2"),
            importlib.import_module("externalscaler_pb2_grpc"),
        )
    finally:
        # Imported: the generated files are no longer needed.
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)


def call(pb, stub, c):
    ref = pb.ScaledObjectRef(
        name=c.get("name", ""),
        namespace=c.get("namespace", ""),
        scalerMetadata=c.get("metadata", {}),
    )
    method = c["method"]
    timeout = c.get("timeout", 10)
    if method == "IsActive":
        return {"result": stub.IsActive(ref, timeout=timeout).result}
    if method == "StreamIsActive":
        stream = stub.StreamIsActive(ref, timeout=timeout)
        try:
            return {"first": next(stream).result}
        finally:
            stream.cancel()
    if method == "GetMetricSpec":
        r = stub.GetMetricSpec(ref, timeout=timeout)
        return {
            "metricSpecs": [
                {
                    "metricName": s.metricName,
                    "targetSize": s.targetSize,
                    "targetSizeFloat": s.targetSizeFloat,
                }
                for s in r.metricSpecs
            ]
        }
    if method == "GetMetrics":
        req = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=c.get("metricName", ""))
        r = stub.GetMetrics(req, timeout=timeout)
        return {
            "metricValues": [
                {
                    "metricName": v.metricName,
                    "metricValue": v.metricValue,
                    "metricValueFloat": v.metricValueFloat,
                }
                for v in r.metricValues
            ]
        }
    raise ValueError(f"unknown method {method!r}")


def main():
    proto_dir, address = sys.argv[1], sys.argv[2]
    pb, pb_grpc = stubs(proto_dir)
    calls = json.load(sys.stdin)
    results = []
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = pb_grpc.ExternalScalerStub(channel)
        for c in calls:
            try:
                results.append({"ok": call(pb, stub, c)})
            except grpc.RpcError as e:
                results.append({"error": {"code": e.code().name, "details": e.details()}})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
