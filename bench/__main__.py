"""C{python -m bench}: see bench/cli.py and docs/benchmarks.md."""

if __name__ == "__main__":
    import sys

    from bench.cli import main

    sys.exit(main())
