"""
Whole client workflows against a running daemon: the aws cli (cp of a large
file, sync of a tree both ways, rm --recursive) and rclone (copy, sync,
check, delete), compared byte for byte with the local files.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.daemon import ACCESS_KEY, SECRET_KEY, file_sha256, poll, shared_gateway, write_pattern_file
from tests.harness import run_aws, run_rclone

MiB = 1024 * 1024






def make_tree(root: Path, count: int = 30) -> list[str]:
    """count files in nested folders, sizes from empty to 9 MiB (one multipart). -> relative paths."""
    folders = ["", "a", "a/b", "a/b/c", "d", "d/e f", "g/h/i/j"]
    paths = []
    for index in range(count):
        relative = f"{folders[index % len(folders)]}/file-{index:02d}.bin".lstrip("/")
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if index == 7:
            write_pattern_file(path, 9 * MiB + 17, seed=index)
        else:
            path.write_bytes(os.urandom((index * 7919) % 200_000))
        # Made a minute ago: S3 dates are whole seconds, and a file changed in
        # the same second as its upload looks newer than the object to a sync.
        made = time.time() - 60
        os.utime(path, (made, made))
        paths.append(relative)
    return sorted(paths)


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root."""
    return {
        str(path.relative_to(root)): file_sha256(path) for path in sorted(root.rglob("*")) if path.is_file()
    }


class ClientWorkflowTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = shared_gateway()
        self.s3 = self.gateway.client()
        self.bucket = self.gateway.new_bucket(self.s3)
        self.endpoint = self.gateway.daemon.endpoint
        scratch = tempfile.mkdtemp(prefix="workflow-")
        self.addCleanup(shutil.rmtree, scratch, True)
        self.scratch = Path(scratch)

    def keys(self, prefix: str = "") -> list[str]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def backend_count(self) -> int:
        return sum(len(keys) for keys in self.gateway.backend_keys(f"{self.bucket}/").values())


class AwsCliTests(ClientWorkflowTestCase):
    def aws(self, *args: str, **kwargs):
        return run_aws(list(args), self.endpoint, ACCESS_KEY, SECRET_KEY, timeout=180, **kwargs)

    def test_cp_of_a_200mib_file_is_byte_exact(self) -> None:
        source = self.scratch / "big.bin"
        expected = write_pattern_file(source, 200 * MiB, seed=3)
        self.aws("s3", "cp", str(source), f"s3://{self.bucket}/big/big.bin")
        head = self.s3.head_object(Bucket=self.bucket, Key="big/big.bin")
        self.assertEqual(head["ContentLength"], 200 * MiB)
        self.assertRegex(head["ETag"], r'-\d+"$')  # the cli went multipart
        source.unlink()
        target = self.scratch / "back.bin"
        self.aws("s3", "cp", f"s3://{self.bucket}/big/big.bin", str(target))
        self.assertEqual(file_sha256(target), expected)

    def test_sync_up_and_down_round_trips_a_tree(self) -> None:
        up = self.scratch / "up"
        paths = make_tree(up)
        self.aws("s3", "sync", str(up), f"s3://{self.bucket}/tree")
        self.assertEqual(self.keys("tree/"), sorted(f"tree/{p}" for p in paths))
        # Nothing changed: a second sync uploads nothing (sizes and dates agree).
        again = self.aws("s3", "sync", str(up), f"s3://{self.bucket}/tree")
        self.assertNotIn("upload:", again.stdout)
        down = self.scratch / "down"
        self.aws("s3", "sync", f"s3://{self.bucket}/tree", str(down))
        self.assertEqual(tree(down), tree(up))
        # A change and a removal go up with --delete, and come back down.
        (up / paths[3]).write_bytes(b"changed content")
        (up / paths[4]).unlink()
        result = self.aws("s3", "sync", "--delete", str(up), f"s3://{self.bucket}/tree")
        self.assertIn(f"delete: s3://{self.bucket}/tree/{paths[4]}", result.stdout)
        self.assertEqual(self.keys("tree/"), sorted(f"tree/{p}" for p in paths if p != paths[4]))
        self.aws("s3", "sync", "--delete", f"s3://{self.bucket}/tree", str(down))
        self.assertEqual(tree(down), tree(up))

    def test_rm_recursive_removes_everything_under_the_prefix(self) -> None:
        up = self.scratch / "up"
        paths = make_tree(up, count=12)
        self.aws("s3", "sync", str(up), f"s3://{self.bucket}/gone")
        self.s3.put_object(Bucket=self.bucket, Key="kept/one", Body=b"stays")
        self.assertEqual(len(self.keys("gone/")), len(paths))
        self.aws("s3", "rm", "--recursive", f"s3://{self.bucket}/gone")
        self.assertEqual(self.keys(), ["kept/one"])
        poll(
            lambda: self.backend_count() == 1,
            timeout=30,
            message=f"{self.backend_count()} backend copies left",
        )


class RcloneTests(ClientWorkflowTestCase):
    def setUp(self) -> None:
        if shutil.which("rclone") is None:
            raise SkipTest("rclone is not installed (Debian package 'rclone'; scripts/install-system-deps)")
        super().setUp()

    def rclone(self, *args: str):
        return run_rclone(list(args), self.endpoint, ACCESS_KEY, SECRET_KEY, timeout=180)

    def test_copy_sync_check_and_delete_of_a_tree(self) -> None:
        local = self.scratch / "local"
        paths = make_tree(local, count=20)
        remote = f"s3:{self.bucket}/rc"
        self.rclone("copy", str(local), remote)
        self.assertEqual(self.keys("rc/"), sorted(f"rc/{p}" for p in paths))
        self.rclone("check", str(local), remote)
        down = self.scratch / "down"
        self.rclone("copy", remote, str(down))
        self.assertEqual(tree(down), tree(local))
        # sync mirrors a change, an addition and a removal.
        (local / paths[0]).write_bytes(b"new bytes")
        (local / paths[1]).unlink()
        (local / "added" / "deep").mkdir(parents=True)
        (local / "added" / "deep" / "new.txt").write_bytes(b"added")
        self.rclone("sync", str(local), remote)
        expected = sorted(f"rc/{p}" for p in [*paths[:1], *paths[2:], "added/deep/new.txt"])
        self.assertEqual(self.keys("rc/"), expected)
        self.rclone("check", str(local), remote)
        self.rclone("sync", remote, str(down))
        self.assertEqual(tree(down), tree(local))
        self.assertTrue(filecmp.cmp(down / paths[0], local / paths[0], shallow=False))
        # delete removes the objects (and their backend copies).
        self.rclone("delete", remote)
        self.assertEqual(self.keys("rc/"), [])
        poll(
            lambda: self.backend_count() == 0,
            timeout=30,
            message=f"{self.backend_count()} backend copies left",
        )
