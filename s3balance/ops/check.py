"""
C{s3balance-check}: a short, non-destructive smoke test of a running s3balance,
for operators after an install, an upgrade or a config change.

    s3balance-check --endpoint http://127.0.0.1:8080 --access-key AK --secret-key SK \\
        --bucket demo [--prefix s3balance-check/] [--metrics-token T] [--virtual-host]

Against an existing virtual bucket it checks C{/health} and the metrics path,
ListBuckets, then PUT / HEAD / GET / presigned GET (fetched with urllib, as a
browser would) / DELETE of one object and a two-part multipart upload (5 MiB +
1 KiB), all under C{<prefix><run id>/}, and removes what it wrote whatever
happens.  It prints one row per check and exits 0 when every check passed, 1
otherwise (2 for bad arguments).

It uses botocore (a dependency of the daemon) rather than boto3, so it runs
from the daemon's own virtualenv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Optional, TextIO

import attr

__all__ = ["CheckResult", "SmokeTest", "main"]

PART_SIZE = 5 * 1024 * 1024
LAST_PART_SIZE = 1024
SMALL_SIZE = 64 * 1024


class CheckFailed(Exception):
    """A check's expectation was not met; the message is its one-line detail."""


@attr.s(frozen=True, auto_attribs=True)
class CheckResult:
    name: str
    outcome: str  # PASS, FAIL or SKIP
    seconds: float
    detail: str


def _body(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def _client_error(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "?")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"{code} (HTTP {status})"
    return f"{type(error).__name__}: {error}"


class SmokeTest:
    """
    The checks, run in order; a check whose prerequisite failed is skipped
    (and the run still fails, because the prerequisite did).
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        prefix: str = "s3balance-check/",
        metrics_token: str = "",
        metrics_path: str = "/metrics",
        virtual_host: bool = False,
        region: str = "us-east-1",
        timeout: float = 30.0,
    ) -> None:
        import botocore.config
        import botocore.session

        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.scratch = f"{prefix}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}/"
        self.metrics_token = metrics_token
        self.metrics_path = "/" + metrics_path.lstrip("/")
        self.timeout = timeout
        session = botocore.session.get_session()
        self.s3 = session.create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=botocore.config.Config(
                signature_version="s3v4",
                s3={"addressing_style": "virtual" if virtual_host else "path"},
                retries={"total_max_attempts": 1},
                connect_timeout=timeout,
                read_timeout=timeout,
            ),
        )
        self.results: list[CheckResult] = []
        self.written: list[str] = []
        self.upload_id: Optional[str] = None
        self.small = _body(SMALL_SIZE, self.scratch + "small")
        self.large = _body(PART_SIZE, self.scratch + "part1") + _body(LAST_PART_SIZE, self.scratch + "part2")

    @property
    def small_key(self) -> str:
        return self.scratch + "object.bin"

    @property
    def multipart_key(self) -> str:
        return self.scratch + "multipart.bin"

    # -- the checks: each returns its detail or raises --------------------------

    def check_health(self) -> str:
        status, body = self._http(self.endpoint + "/health")
        try:
            document = json.loads(body)
        except ValueError:
            raise CheckFailed(f"HTTP {status}, not JSON") from None
        backends = document.get("backends", {})
        down = sorted(name for name, state in backends.items() if not state.get("up"))
        summary = f"{document.get('status')}: {len(backends) - len(down)}/{len(backends)} backends up"
        if down:
            summary += f" (down: {', '.join(down)})"
        if status != 200:
            raise CheckFailed(f"HTTP {status}, {summary}")
        return f"{summary}, strategy {document.get('strategy')}"

    def check_metrics(self) -> str:
        headers = {"Authorization": f"Bearer {self.metrics_token}"} if self.metrics_token else {}
        status, body = self._http(self.endpoint + self.metrics_path, headers)
        if status == 401:
            raise CheckFailed("HTTP 401: the metrics need a token (--metrics-token)")
        if status != 200:
            raise CheckFailed(f"HTTP {status}")
        text = body.decode("utf-8", "replace")
        if "s3balance_backend_up" not in text:
            raise CheckFailed("no s3balance_backend_up series in the exposition")
        series = sum(1 for line in text.splitlines() if line.startswith("s3balance_"))
        return f"{series} s3balance series"

    def check_list_buckets(self) -> str:
        names = [bucket["Name"] for bucket in self.s3.list_buckets().get("Buckets", [])]
        if self.bucket not in names:
            raise CheckFailed(
                f"bucket {self.bucket!r} not listed (the key sees: {', '.join(names) or 'none'})"
            )
        return f"{len(names)} bucket(s), {self.bucket} among them"

    def check_put(self) -> str:
        self.written.append(self.small_key)
        answer = self.s3.put_object(
            Bucket=self.bucket, Key=self.small_key, Body=self.small, ContentType="application/octet-stream"
        )
        expected = hashlib.md5(self.small).hexdigest()  # the ETag of a simple PUT
        if answer.get("ETag", "").strip('"') != expected:
            raise CheckFailed(f"ETag {answer.get('ETag')} is not the MD5 {expected}")
        return f"{self.small_key} ({SMALL_SIZE} bytes)"

    def check_head(self) -> str:
        answer = self.s3.head_object(Bucket=self.bucket, Key=self.small_key)
        if answer.get("ContentLength") != SMALL_SIZE:
            raise CheckFailed(f"Content-Length {answer.get('ContentLength')}, expected {SMALL_SIZE}")
        return f"Content-Length {SMALL_SIZE}"

    def check_get(self) -> str:
        body = self.s3.get_object(Bucket=self.bucket, Key=self.small_key)["Body"].read()
        if body != self.small:
            raise CheckFailed(f"got {len(body)} bytes that differ from what was written")
        return "body matches"

    def check_presigned_get(self) -> str:
        url = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.small_key}, ExpiresIn=300
        )
        # urllib follows a redirect-mode 302 to the backend, as a browser would.
        status, body = self._http(url)
        if status != 200:
            raise CheckFailed(f"HTTP {status}")
        if body != self.small:
            raise CheckFailed(f"got {len(body)} bytes that differ from what was written")
        return "body matches"

    def check_multipart(self) -> str:
        self.written.append(self.multipart_key)
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.multipart_key)
        self.upload_id = upload["UploadId"]
        parts = []
        for number, chunk in enumerate((self.large[:PART_SIZE], self.large[PART_SIZE:]), start=1):
            answer = self.s3.upload_part(
                Bucket=self.bucket,
                Key=self.multipart_key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=chunk,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        answer = self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.multipart_key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )
        self.upload_id = None
        if not answer.get("ETag", "").strip('"').endswith("-2"):
            raise CheckFailed(f"ETag {answer.get('ETag')} is not a two-part ETag")
        body = self.s3.get_object(Bucket=self.bucket, Key=self.multipart_key)["Body"].read()
        if hashlib.sha256(body).digest() != hashlib.sha256(self.large).digest():
            raise CheckFailed(f"read back {len(body)} bytes that differ from the {len(self.large)} written")
        return f"2 parts, {len(self.large)} bytes read back"

    def check_delete(self) -> str:
        for key in list(self.written):
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.small_key)
        except Exception as error:
            if "404" in _client_error(error) or "NotFound" in _client_error(error):
                self.written.clear()
                return "objects gone"
            raise
        raise CheckFailed(f"{self.small_key} still exists after DELETE")

    def check_scratch_empty(self) -> str:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.scratch)
        left = [item["Key"] for item in listing.get("Contents", [])]
        if left:
            raise CheckFailed(f"left behind: {', '.join(left)}")
        return f"nothing left under {self.scratch}"

    CHECKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("health", "check_health", ()),
        ("metrics", "check_metrics", ()),
        ("list buckets", "check_list_buckets", ()),
        ("put object", "check_put", ("list buckets",)),
        ("head object", "check_head", ("put object",)),
        ("get object", "check_get", ("put object",)),
        ("presigned get", "check_presigned_get", ("put object",)),
        ("multipart upload", "check_multipart", ("list buckets",)),
        ("delete objects", "check_delete", ("put object",)),
        ("scratch prefix empty", "check_scratch_empty", ("delete objects",)),
    )

    # -- running ----------------------------------------------------------------

    def run(self, progress: Optional[Callable[[CheckResult], None]] = None) -> list[CheckResult]:
        passed: set[str] = set()
        try:
            for name, method, requires in self.CHECKS:
                missing = [need for need in requires if need not in passed]
                started = time.monotonic()
                if missing:
                    result = CheckResult(name, "SKIP", 0.0, f"needs {', '.join(missing)}")
                else:
                    try:
                        detail = getattr(self, method)()
                        result = CheckResult(name, "PASS", time.monotonic() - started, detail)
                        passed.add(name)
                    except CheckFailed as failure:
                        result = CheckResult(name, "FAIL", time.monotonic() - started, str(failure))
                    except Exception as error:
                        result = CheckResult(name, "FAIL", time.monotonic() - started, _client_error(error))
                self.results.append(result)
                if progress is not None:
                    progress(result)
        finally:
            self.clean_up()
        return self.results

    def clean_up(self) -> None:
        """Remove whatever this run wrote; never raises."""
        if self.upload_id is not None:
            try:
                self.s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.multipart_key, UploadId=self.upload_id
                )
            except Exception:
                pass
        for key in self.written:
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
            except Exception:
                pass
        self.written.clear()

    def _http(self, url: str, headers: Optional[dict[str, str]] = None) -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


def format_row(result: CheckResult) -> str:
    return f"{result.name:<22} {result.outcome:<5} {result.seconds:>7.2f}s  {result.detail}"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="s3balance-check",
        description="Non-destructive smoke test of a running s3balance (writes and removes a few objects "
        "under a scratch prefix of one existing virtual bucket).",
    )
    parser.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"), help="default $AWS_ACCESS_KEY_ID"
    )
    parser.add_argument(
        "--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"), help="default $AWS_SECRET_ACCESS_KEY"
    )
    parser.add_argument("--bucket", required=True, help="an existing virtual bucket the key may write to")
    parser.add_argument(
        "--prefix", default="s3balance-check/", help="scratch prefix (default s3balance-check/)"
    )
    parser.add_argument(
        "--metrics-token",
        default=os.environ.get("S3BALANCE_METRICS_TOKEN", ""),
        help="metrics.token, sent as a bearer token (default $S3BALANCE_METRICS_TOKEN)",
    )
    parser.add_argument("--metrics-path", default="/metrics", help="metrics.path (default /metrics)")
    parser.add_argument(
        "--virtual-host", action="store_true", help="virtual-host style URLs (bucket.<endpoint host>)"
    )
    parser.add_argument("--region", default="us-east-1", help="the region clients sign for (s3api.region)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    args = parser.parse_args(argv)
    if not args.access_key or not args.secret_key:
        parser.error(
            "--access-key and --secret-key (or $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY) are required"
        )
    return args


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None) -> int:
    """Run the smoke test; 0 when every check passed, 1 otherwise, 2 for bad arguments."""
    out = out if out is not None else sys.stdout
    try:
        args = parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    smoke = SmokeTest(
        args.endpoint,
        args.access_key,
        args.secret_key,
        args.bucket,
        prefix=args.prefix,
        metrics_token=args.metrics_token,
        metrics_path=args.metrics_path,
        virtual_host=args.virtual_host,
        region=args.region,
        timeout=args.timeout,
    )
    out.write(f"s3balance-check: {smoke.endpoint}, bucket {args.bucket}, scratch prefix {smoke.scratch}\n")
    out.write(f"{'CHECK':<22} {'RESULT':<5} {'TIME':>8}  DETAIL\n")

    def progress(result: CheckResult) -> None:
        out.write(format_row(result) + "\n")
        out.flush()

    results = smoke.run(progress)
    failed = [r for r in results if r.outcome != "PASS"]
    # Deliberately not "N passed, N failed": that line means a test suite's result to CI.
    if failed:
        out.write(f"s3balance-check: FAILED, {len(failed)} of {len(results)} checks did not pass\n")
        return 1
    out.write(f"s3balance-check: ok, all {len(results)} checks passed\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
