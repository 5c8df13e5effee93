"""
C{s3balance-admin fsck}: compare the metadata store with the backends.

    s3balance-admin fsck --config FILE [--repair] [--drop-missing]
                         [--max-drop-fraction 0.01] [--force]
                         [--backend NAME ...] [--older-than 1h] [--concurrency 8]

(also C{python -m s3balance.ops.fsck ...} with the same arguments).

Checks, each streamed page by page (nothing is loaded whole):

  0. every backend's real bucket must answer a listing (ListObjectsV2 naming
     that bucket, status 200); until it has, nothing of that backend is ever
     dropped: its objects can't be shown to be missing.
  1. objects: every C{object_locations} row -> HEAD its real key on its
     backend (C{--concurrency} requests at a time).  A 404 is followed by a
     GET, whose error code says what is gone: I{missing} is only a
     C{NoSuchKey} from a backend whose real bucket answered step 0 (and the
     row still there when re-read from the store).  Any other failure (403,
     5xx, a timeout, C{NoSuchBucket}, a 404 without the NoSuchKey code) makes
     the object I{unverifiable}.  A different Content-Length is a I{size
     mismatch}, a different ETag an I{etag mismatch} (C{--ignore-etag} turns
     that off).
  2. orphans: every backend's real bucket is listed (ListObjectsV2); an object
     older than C{--older-than} that no location row, write intent, queued
     deletion or multipart upload row names (all four tables asked in ONE
     statement per page) is looked at more closely.  The real bucket may be
     shared with other applications, so only a key of the gateway's own
     layout (C{<virtual bucket>/<32 lowercase hex digits>}, see
     L{s3balance.s3.gateway.Gateway.new_real_key}) whose metadata names that
     virtual bucket (C{x-amz-meta-s3balance-bucket}, see
     L{s3balance.s3.writes.backend_headers}) is an I{orphan}; anything else,
     the health probe's key included, is a I{foreign key}, reported and left
     alone.
  3. orphan uploads: ListMultipartUploads on every backend; an upload older
     than C{--older-than} of the gateway's key layout whose backend upload id
     is neither in C{multipart_uploads} nor queued for abort, and whose real
     key is not under a running write intent (large streaming PUTs use
     backend multipart uploads), is an I{orphan upload}; an upload of any
     other key is a I{foreign upload}, left alone.
  4. counts of write intents whose lease ran out and of queued deletions
     (the daemon's cleaner handles both; reported, not differences).
  5. usage: each virtual bucket's usage counters (what its quota is checked
     against) against its object rows, one statement per bucket (a commit
     changes both at once, so a live daemon causes no false difference).

C{--repair} recounts the usage counters that differ (L{s3balance.store.quotas.recount_usage},
safe while the daemons write), deletes orphans and aborts orphan uploads: each one is asked
about once more, right before, through the store's own deletion guard
(L{s3balance.store.objects.is_referenced}, and the deletion queue), and
every deletion is reported with its key and reason.  Missing objects are only
reported, unless C{--drop-missing} also removes their location row (and the
object row when no other copy is left): the data is gone, and the object
disappears from listings.  When more than C{--max-drop-fraction} (default
0.01) of the checked objects look missing, no row is dropped without
C{--force}: a wrong endpoint or a restored bucket looks like that too.
Before dropping, each backend's real bucket must answer a listing again and
each object's GET must still answer NoSuchKey.

Progress goes to stderr every few seconds on a long run.

Exit status: 0 when store and backends agree (or every difference was
repaired), 1 when differences remain (unverifiable objects and missing rows
left undropped included), 2 for a bad configuration.

The modules:

  - L{report}: L{Options} (what one run does) and L{Report} (what it found).
  - L{backend}: botocore clients for the backends, and reading their errors.
  - L{state}: what one run shares (store, clients, output, progress) and
    step 0, proving each real bucket answers.
  - L{locations}: steps 1 and C{--drop-missing}.
  - L{orphans}: steps 2 and 3, with their C{--repair}.
  - L{checker}: L{Fsck}, the whole run (step 4 and the summary too).
  - L{command}: the command line and entry points.
"""

from s3balance.ops.fsck.backend import backend_client
from s3balance.ops.fsck.checker import Fsck
from s3balance.ops.fsck.command import add_arguments, command, main, options_from_args, run
from s3balance.ops.fsck.report import Counter, Options, Report

__all__ = [
    "Counter",
    "Fsck",
    "Options",
    "Report",
    "add_arguments",
    "backend_client",
    "command",
    "main",
    "options_from_args",
    "run",
]
