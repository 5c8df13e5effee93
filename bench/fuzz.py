"""
C{python -m bench.fuzz} (C{make fuzz ARGS="..."}): the long fuzz run of the
daemon's HTTP face, tests/test_fuzz.py with many more examples.

    python -m bench.fuzz --examples 50000          # random seed, hypothesis DB kept
    python -m bench.fuzz --examples 20000 --seed 7 # reproducible
    python -m bench.fuzz --only test_aws_chunked   # one face

It runs trial in a child process (the suite's own harness starts SeaweedFS
and the daemon) and exits with trial's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=50000, help="hypothesis examples over the whole module (default 50000)")
    parser.add_argument("--seed", type=int, default=None, help="a fixed hypothesis seed")
    parser.add_argument("--only", default=None, help="one test of tests.test_fuzz.FuzzTests, e.g. test_general")
    args = parser.parse_args(argv)
    env = dict(os.environ, S3BALANCE_FUZZ_EXAMPLES=str(args.examples), PYTHONPATH=str(ROOT))
    env.pop("CI", None)  # CI derandomizes; the long run explores
    if args.seed is not None:
        env["S3BALANCE_FUZZ_SEED"] = str(args.seed)
    target = "tests.test_fuzz" + (f".FuzzTests.{args.only}" if args.only else "")
    trial = Path(sys.executable).with_name("trial")
    command = [str(trial) if trial.exists() else sys.executable, *([] if trial.exists() else ["-m", "twisted.trial"]), target]
    print("+", " ".join(command), f"(S3BALANCE_FUZZ_EXAMPLES={args.examples})", flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
