"""
Virtual-host addressing and the public host name, with real clients.

A daemon with C{s3api.virtual_host: s3.test} serves C{<bucket>.s3.test}.
Without DNS for C{s3.test}, clients point their HTTP proxy at the daemon:
they then send request lines in absolute form (C{PUT http://b.s3.test:P/k}),
which the daemon serves as if the authority were the Host header.  curl
uses C{--resolve} instead.  Path style keeps working on the same daemon.

A daemon with C{s3api.host: public.example:443} (behind a proxy that
rewrites Host) verifies signatures against that public host.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import ACCESS_KEY, SECRET_KEY
from tests.gateways import Lazy, error_code, launch, lazy_gateway, s3_client, s3_error
from tests.harness import harness_dir, run_aws, run_rclone, run_s3cmd, unique_bucket_name
from tests.signing import send, sign_request

DOMAIN = "s3.test"
PUBLIC_HOST = "public.example:443"

vhost_gateway = lazy_gateway("vhost", s3api={"virtual_host": DOMAIN})
public_host_gateway = lazy_gateway("public-host", s3api={"host": PUBLIC_HOST})


def proxy_env(port: int) -> dict[str, str]:
    """Environment that sends a client's plain-http requests through the daemon as its proxy."""
    proxy = f"http://127.0.0.1:{port}"
    return {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}


class VirtualHostTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = vhost_gateway()
        self.port = self.gateway.port
        self.domain_endpoint = f"http://{DOMAIN}:{self.port}"
        self.path_client = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.path_client, prefix="vhost")
        self.bucket_host = f"{self.bucket}.{DOMAIN}:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="vhost-", dir=harness_dir()))
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def virtual_client(self, addressing_style: str = "virtual"):
        return s3_client(
            self.domain_endpoint,
            addressing_style=addressing_style,
            proxies={"http": f"http://127.0.0.1:{self.port}"},
        )

    def record_hosts(self, client) -> list[str]:
        hosts: list[str] = []
        client.meta.events.register(
            "before-send.s3", lambda request, **kw: hosts.append(urlsplit(request.url).netloc)
        )
        return hosts

    def test_boto3_virtual_host_round_trip(self) -> None:
        client = self.virtual_client()
        hosts = self.record_hosts(client)
        data = os.urandom(3 * 1024 * 1024 + 7)
        key = "dir/with space/ü.bin"
        client.put_object(Bucket=self.bucket, Key=key, Body=data)
        self.assertEqual(client.head_object(Bucket=self.bucket, Key=key)["ContentLength"], len(data))
        self.assertEqual(client.get_object(Bucket=self.bucket, Key=key)["Body"].read(), data)
        listed = client.list_objects_v2(Bucket=self.bucket, Prefix="dir/")
        self.assertEqual([item["Key"] for item in listed["Contents"]], [key])
        # The same object through path style on the same daemon.
        self.assertEqual(self.path_client.get_object(Bucket=self.bucket, Key=key)["Body"].read(), data)
        client.delete_object(Bucket=self.bucket, Key=key)
        self.assertNotIn("Contents", self.path_client.list_objects_v2(Bucket=self.bucket))
        self.assertEqual(set(hosts), {self.bucket_host})

    def test_path_style_object_is_seen_through_virtual_host(self) -> None:
        self.path_client.put_object(Bucket=self.bucket, Key="from-path", Body=b"path style")
        client = self.virtual_client()
        self.assertEqual(client.get_object(Bucket=self.bucket, Key="from-path")["Body"].read(), b"path style")

    def test_path_style_through_the_bare_domain(self) -> None:
        """C{http://s3.test:P/bucket/key}: the domain itself names no bucket."""
        client = self.virtual_client(addressing_style="path")
        hosts = self.record_hosts(client)
        client.put_object(Bucket=self.bucket, Key="k", Body=b"bare domain")
        self.assertEqual(client.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"bare domain")
        self.assertEqual(set(hosts), {f"{DOMAIN}:{self.port}"})

    def test_create_list_and_delete_bucket_by_virtual_host(self) -> None:
        client = self.virtual_client()
        name = unique_bucket_name("vhost-new")
        client.create_bucket(Bucket=name)
        self.path_client.head_bucket(Bucket=name)
        self.assertIn(name, [b["Name"] for b in client.list_buckets()["Buckets"]])
        client.delete_bucket(Bucket=name)
        with self.assertRaises(ClientError) as raised:
            self.path_client.head_bucket(Bucket=name)
        self.assertEqual(raised.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

    def test_missing_key_by_virtual_host_is_no_such_key(self) -> None:
        with self.assertRaises(ClientError) as raised:
            self.virtual_client().get_object(Bucket=self.bucket, Key="nope")
        self.assertEqual(error_code(raised.exception), "NoSuchKey")

    def test_aws_cli_virtual_host_through_http_proxy(self) -> None:
        data = os.urandom(1024 * 1024 + 1)
        source = self.workdir / "up.bin"
        source.write_bytes(data)

        def aws(*args: str) -> str:
            return run_aws(
                list(args),
                self.domain_endpoint,
                ACCESS_KEY,
                SECRET_KEY,
                env_extra=proxy_env(self.port),
                addressing_style="virtual",
                cwd=self.workdir,
            ).stdout

        aws("s3", "cp", str(source), f"s3://{self.bucket}/cli.bin")
        listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", self.bucket))
        self.assertEqual([(o["Key"], o["Size"]) for o in listed["Contents"]], [("cli.bin", len(data))])
        head = json.loads(aws("s3api", "head-object", "--bucket", self.bucket, "--key", "cli.bin"))
        self.assertEqual(head["ETag"], f'"{hashlib.md5(data).hexdigest()}"')
        aws("s3", "cp", f"s3://{self.bucket}/cli.bin", str(self.workdir / "down.bin"))
        self.assertEqual((self.workdir / "down.bin").read_bytes(), data)
        aws("s3", "rm", f"s3://{self.bucket}/cli.bin")
        self.assertNotIn("Contents", self.path_client.list_objects_v2(Bucket=self.bucket))

    def test_rclone_virtual_host_through_http_proxy(self) -> None:
        data = os.urandom(1024 * 1024 + 3)
        source = self.workdir / "up.bin"
        source.write_bytes(data)

        def rclone(*args: str) -> str:
            return run_rclone(
                list(args),
                self.domain_endpoint,
                ACCESS_KEY,
                SECRET_KEY,
                env_extra=proxy_env(self.port),
                addressing_style="virtual",
            ).stdout

        rclone("copyto", str(source), f"s3:{self.bucket}/rclone.bin")
        self.assertEqual(rclone("lsf", f"s3:{self.bucket}").split(), ["rclone.bin"])
        rclone("copyto", f"s3:{self.bucket}/rclone.bin", str(self.workdir / "down.bin"))
        self.assertEqual((self.workdir / "down.bin").read_bytes(), data)
        rclone("deletefile", f"s3:{self.bucket}/rclone.bin")
        self.assertNotIn("Contents", self.path_client.list_objects_v2(Bucket=self.bucket))

    def test_s3cmd_virtual_host_through_proxy(self) -> None:
        data = os.urandom(1024 * 1024 + 5)
        source = self.workdir / "up.bin"
        source.write_bytes(data)
        settings = {"proxy_host": "127.0.0.1", "proxy_port": str(self.port)}

        def s3cmd(*args: str) -> str:
            return run_s3cmd(
                list(args),
                self.domain_endpoint,
                ACCESS_KEY,
                SECRET_KEY,
                addressing_style="virtual",
                settings=settings,
            ).stdout

        s3cmd("put", str(source), f"s3://{self.bucket}/s3cmd.bin")
        self.assertIn(f"s3://{self.bucket}/s3cmd.bin", s3cmd("ls", f"s3://{self.bucket}/"))
        s3cmd("get", f"s3://{self.bucket}/s3cmd.bin", str(self.workdir / "down.bin"))
        self.assertEqual((self.workdir / "down.bin").read_bytes(), data)
        s3cmd("del", f"s3://{self.bucket}/s3cmd.bin")
        self.assertNotIn("Contents", self.path_client.list_objects_v2(Bucket=self.bucket))

    def curl(self, *args: str) -> subprocess.CompletedProcess:
        resolve = f"{self.bucket}.{DOMAIN}:{self.port}:127.0.0.1"
        return subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "--resolve", resolve, *args],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def test_curl_resolve_presigned_get(self) -> None:
        data = os.urandom(200_000)
        self.path_client.put_object(Bucket=self.bucket, Key="curl/presigned.bin", Body=data)
        url = self.virtual_client().generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": "curl/presigned.bin"}, ExpiresIn=300
        )
        self.assertEqual(urlsplit(url).netloc, self.bucket_host)
        done = self.curl("--fail", url)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, data)

    def test_curl_resolve_aws_sigv4_put_and_get(self) -> None:
        data = os.urandom(300_000)
        source = self.workdir / "curl.bin"
        source.write_bytes(data)
        url = f"http://{self.bucket_host}/curl/signed.bin"
        signing = [
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            f"{ACCESS_KEY}:{SECRET_KEY}",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ]
        put = self.curl("--fail", *signing, "-T", str(source), url)
        self.assertEqual(put.returncode, 0, put.stdout + put.stderr)
        got = self.curl("--fail", *signing, url)
        self.assertEqual(got.returncode, 0, got.stdout[-500:] + got.stderr)
        self.assertEqual(got.stdout, data)
        self.assertEqual(
            self.path_client.get_object(Bucket=self.bucket, Key="curl/signed.bin")["Body"].read(), data
        )

    def test_raw_virtual_host_request_with_host_header(self) -> None:
        """Origin-form request line, bucket in the Host header (what DNS-resolving clients send)."""
        body = b"host header"
        url = f"http://{self.bucket_host}/raw"
        signed = sign_request("PUT", url, payload=hashlib.sha256(body).hexdigest())
        status, _headers, answer = send("PUT", url, signed.headers, body, connect_to=("127.0.0.1", self.port))
        self.assertEqual(status, 200, answer)
        self.assertEqual(self.path_client.get_object(Bucket=self.bucket, Key="raw")["Body"].read(), body)


class PublicHostTests(SynchronousTestCase):
    """C{s3api.host}: signatures are checked against the public host, not the Host received."""

    def setUp(self) -> None:
        self.gateway = public_host_gateway()
        self.local = f"http://127.0.0.1:{self.gateway.port}"
        self.key = unique_bucket_name("key")

    def put_and_get(self, signed_host: str) -> None:
        body = os.urandom(50_000)
        url = f"{self.local}/vb-default/{self.key}"
        signed = sign_request("PUT", url, payload=hashlib.sha256(body).hexdigest(), host=signed_host)
        status, _headers, answer = send("PUT", url, signed.headers, body)
        self.assertEqual(status, 200, answer)
        signed = sign_request("GET", url, payload=hashlib.sha256(b"").hexdigest(), host=signed_host)
        status, _headers, answer = send("GET", url, signed.headers)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer, body)

    def test_request_signed_for_the_public_host_is_accepted(self) -> None:
        self.put_and_get(PUBLIC_HOST)

    def test_request_signed_for_the_public_host_without_default_port_is_accepted(self) -> None:
        """
        A client whose endpoint is https://public.example signs the Host it
        sends, C{public.example}: the default port is never in a Host header.
        """
        self.put_and_get(PUBLIC_HOST.removesuffix(":443"))

    def test_boto3_through_a_proxy_to_the_public_host(self) -> None:
        client = s3_client(
            f"http://{PUBLIC_HOST}",
            proxies={"http": f"http://127.0.0.1:{self.gateway.port}"},
        )
        client.put_object(Bucket="vb-default", Key=self.key, Body=b"public")
        self.assertEqual(client.get_object(Bucket="vb-default", Key=self.key)["Body"].read(), b"public")
        client.delete_object(Bucket="vb-default", Key=self.key)

    def test_request_signed_for_the_received_host_is_refused(self) -> None:
        url = f"{self.local}/vb-default/{self.key}"
        signed = sign_request("PUT", url, payload=hashlib.sha256(b"x").hexdigest())
        status, _headers, answer = send("PUT", url, signed.headers, b"x")
        self.assertEqual(status, 403)
        self.assertEqual(s3_error(answer)[0], "SignatureDoesNotMatch")


def readme_example_sections() -> dict:
    """The README's "config for real clouds", less what needs real clouds (backends, database)."""
    import yaml

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("A config for real clouds:")
    block = readme[readme.index("```yaml\n", start) + len("```yaml\n") : readme.index("```", readme.index("```yaml\n", start) + 7)]
    example = yaml.safe_load(block)
    return {
        "s3api": example["s3api"],
        "metrics": example["metrics"],
        "api": example["api"],
        "virtual": [b["name"] for b in example["buckets"] if b.get("virtual")],
    }


def _readme_gateway():
    sections = readme_example_sections()
    virtual = sections.pop("virtual")
    # Plain http on port 80 of the example's domain, reached through the
    # daemon as the clients' proxy (no DNS for s3.example.com here).
    return launch("readme-example", virtual, **sections)


readme_gateway = Lazy(_readme_gateway, stop=lambda gateway: gateway.daemon.stop())


def client_error(call) -> str:
    with_error = None
    try:
        call()
    except ClientError as error:
        with_error = error_code(error)
    return with_error or "no error"


class ReadmeExampleConfigTests(SynchronousTestCase):
    """The README's example s3api section, end to end: virtual host and path style."""

    def setUp(self) -> None:
        self.sections = readme_example_sections()
        self.s3api = self.sections["s3api"]
        self.gateway = readme_gateway()
        self.domain = self.s3api["virtual_host"][0]

    def client(self, addressing_style: str, access_key: str, secret_key: str):
        return s3_client(
            f"http://{self.domain}",
            access_key,
            secret_key,
            addressing_style=addressing_style,
            proxies={"http": f"http://127.0.0.1:{self.gateway.port}"},
        )

    def test_virtual_host_and_path_style_with_the_public_host(self) -> None:
        self.assertEqual(self.s3api["host"], self.domain)
        owner = (self.s3api["access_key"], self.s3api["secret_key"])
        virtual = self.client("virtual", *owner)
        hosts: list[str] = []
        virtual.meta.events.register("before-send.s3", lambda request, **kw: hosts.append(urlsplit(request.url).netloc))
        virtual.put_object(Bucket="media", Key="cat.jpg", Body=b"meow")
        self.assertEqual(hosts, [f"media.{self.domain}"])
        path = self.client("path", *owner)
        self.assertEqual(path.get_object(Bucket="media", Key="cat.jpg")["Body"].read(), b"meow")
        listed = virtual.list_objects_v2(Bucket="media", Prefix="cat")["Contents"]
        self.assertEqual([o["Key"] for o in listed], ["cat.jpg"])

    def test_limited_credentials_of_the_example(self) -> None:
        owner = self.client("virtual", self.s3api["access_key"], self.s3api["secret_key"])
        owner.put_object(Bucket="backups", Key="b", Body=b"1")
        reader, media = self.s3api["credentials"]
        read_only = self.client("virtual", reader["access_key"], reader["secret_key"])
        self.assertEqual(read_only.get_object(Bucket="backups", Key="b")["Body"].read(), b"1")
        self.assertEqual(client_error(lambda: read_only.put_object(Bucket="backups", Key="c", Body=b"")), "AccessDenied")
        limited = self.client("virtual", media["access_key"], media["secret_key"])
        limited.put_object(Bucket="media", Key="m", Body=b"2")
        self.assertEqual(client_error(lambda: limited.get_object(Bucket="backups", Key="b")), "AccessDenied")
