"""The media function's memory against the size of what it copies (section ``media-memory``).

Each size runs in a fresh process (``python -m infra.bench.media <bytes> <s3 endpoint>``) that copies
one attachment with the function's own code (``MediaCopier`` over ``ProviderMedia`` and
``S3MediaObjects``: Meta's two-step download, then ``upload_fileobj``) from a local HTTP server that
generates the file as it is read, into a bucket of a moto server running in *another* process (moto
keeps objects in memory: in-process, its copy would be counted). The process first copies a 64 KiB
object (imports, clients, connection pools warm), then the measured one; its peak RSS (``ru_maxrss``)
is read before and after. Memory is flat when the growth does not follow the object's size.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.bench import Context, Row, Table
from infra.local.process import free_port

MB = 1024 * 1024
SIZES = (256 * 1024, 20 * MB, 100 * MB)  # 100 MB: Meta's largest (a document), MEDIA_MAX_MEGABYTES' top
GROWTH_GOAL_MB = 48  # two 8 MiB parts in memory, s3transfer's reads, slack: not the object's 100 MB
BLOCK = bytes(range(256)) * 256  # 64 KiB of the generated file, repeated


class _Files(BaseHTTPRequestHandler):
    """``GET /v24.0/<size>``: Meta's media metadata; ``GET /file/<size>``: that many bytes, generated."""

    def do_GET(self) -> None:
        kind, size = self.path.strip("/").split("/")[-2:]
        if kind == "v24.0":
            body = json.dumps(
                {
                    "url": f"http://{self.headers['Host']}/file/{size}",
                    "mime_type": "application/pdf",
                    "file_size": size,
                    "id": size,
                }
            ).encode()
            self._answer(body, "application/json")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", size)
        self.end_headers()
        left = int(size)
        while left > 0:
            chunk = BLOCK[: min(left, len(BLOCK))]
            self.wfile.write(chunk)
            left -= len(chunk)

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _copy_one(size: int, base_url: str, s3: Any, bucket: str) -> float:
    from crossroute.media import MediaCopier, MediaJob
    from crossroute.media_fetch import ProviderMedia
    from crossroute.store.media_store import S3MediaObjects
    from crossroute.tenants import TenantRegistry
    from infra.local.tenant import local_registry_document
    from tests.fakes.media import MemoryMediaStates

    tenant = TenantRegistry.from_json(local_registry_document()).by_id("demo")
    key = f"media/demo/{size}.pdf"
    job = MediaJob("demo", "meta", f"wamid.{size}", 0, "document", "application/pdf", key, media_id=str(size))
    states = MemoryMediaStates({("demo", "meta", job.message_id): {"0": {"state": "pending"}}})
    source = ProviderMedia(lambda _: tenant, graph_base_url=base_url, graph_version="v24.0")
    copier = MediaCopier(source, S3MediaObjects(s3, bucket), states)
    started = time.perf_counter()
    outcome = copier.copy(job)
    assert outcome.outcome == "stored", outcome
    return time.perf_counter() - started


def child(size: int, endpoint: str) -> dict[str, float]:
    """In a fresh process: warm up with 64 KiB, then copy ``size`` bytes; peak RSS before and after."""
    import boto3
    from botocore.config import Config

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(signature_version="s3v4")
    )
    bucket = f"bench-media-{size}"
    s3.create_bucket(Bucket=bucket)
    _copy_one(64 * 1024, base_url, s3, bucket)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = _copy_one(size, base_url, s3, bucket)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stored = s3.head_object(Bucket=bucket, Key=f"media/demo/{size}.pdf")["ContentLength"]
    assert stored == size, stored
    return {"before_kb": before, "after_kb": after, "seconds": seconds}


def memory(ctx: Context) -> Table:
    table = Table(
        "Media function memory against the object's size (one copy per fresh process)",
        ["object", "peak RSS before", "peak RSS after", "growth", "seconds"],
    )
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(port)
        for size in SIZES:
            table.rows.append(_row(size, f"http://127.0.0.1:{port}", env, ctx))
    finally:
        moto.terminate()
        moto.wait(10)
    table.notes += [
        "peak RSS = ru_maxrss of the copying process (Linux: KiB), after imports and a 64 KiB warm-up copy",
        "download: Meta's two-step GET (local HTTP server, generated bytes);"
        " upload: upload_fileobj, 8 MiB parts, 2 in memory, to a moto server in another process",
        f"largest object tested: {SIZES[-1] // MB} MB (MEDIA_MAX_MEGABYTES' top, Meta's document limit)",
    ]
    return table


def _row(size: int, endpoint: str, env: dict[str, str], ctx: Context) -> Row:
    done = subprocess.run(
        [sys.executable, "-m", "infra.bench.media", str(size), endpoint],
        env=env, cwd=ctx.repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    growth = (result["after_kb"] - result["before_kb"]) / 1024
    label = f"{size // 1024} KiB" if size < MB else f"{size // MB} MB"
    return Row(
        [label, f"{result['before_kb'] / 1024:.0f} MB", f"{result['after_kb'] / 1024:.0f} MB",
         f"+{growth:.0f} MB", f"{result['seconds']:.1f}"],
        goal=f"growth <= {GROWTH_GOAL_MB} MB",
        met=growth <= GROWTH_GOAL_MB,
    )  # fmt: skip


def _wait_for(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the moto server did not start")


if __name__ == "__main__":
    print(json.dumps(child(int(sys.argv[1]), sys.argv[2])))
