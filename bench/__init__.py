"""
Benchmarks of s3balance against SeaweedFS directly and against nginx as a
plain reverse proxy, measured in the same run (see docs/benchmarks.md).

    .venv/bin/python -m bench --quick          # smoke run, < 60 s
    .venv/bin/python -m bench                  # the real measurement
    .venv/bin/python -m bench --help

Modules:

- C{sigv4client}: a lightweight S3 client (http.client + SigV4 header
  signing with UNSIGNED-PAYLOAD), used by every load generator here.
- C{workers}: a pool of client processes (or threads) that run timed jobs
  together and report latencies and their own CPU time.
- C{environment}: SeaweedFS, the daemon and nginx started for a run.
- C{nginx}: nginx as a reverse proxy in a temporary prefix.
- C{throughput}: PUT/GET of 4 KiB and 64 MiB objects, rounds A/B/C.
- C{sdk}: the same with boto3 (one client).
- C{listing}: ListObjectsV2 page times at 10^4 .. 10^6 keys, SQLite and PostgreSQL.
- C{rss}: daemon memory while 8 clients stream 1 GiB each.
- C{profiling}: py-spy on the daemon under 4 KiB load.
- C{report}: the table, the targets and the JSON file.
"""
