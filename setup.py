from pathlib import Path

from setuptools import setup


def runtime_requirements() -> list[str]:
    """requirements/runtime.txt: the one list of what the daemon needs."""
    text = (Path(__file__).resolve().parent / "requirements" / "runtime.txt").read_text()
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


setup(
    name="s3balance",
    version="0.1.0",
    description="An S3-compatible load balancer on Twisted",
    python_requires=">=3.11",
    packages=[
        "s3balance",
        "s3balance.admin",
        "s3balance.s3",
        "s3balance.auth",
        "s3balance.placement",
        "s3balance.backends",
        "s3balance.store",
        "s3balance.config",
        "s3balance.daemon",
        "s3balance.http",
        "s3balance.ops",
        "s3balance.ops.fsck",
        "s3balance.migrations",
        "s3balance.migrations.versions",
        "twisted.plugins",
    ],
    # The Alembic folder lives at the top of the tree (migrations/) and is
    # installed as s3balance.migrations so the daemon finds it when installed.
    package_dir={"s3balance.migrations": "migrations"},
    package_data={"s3balance": ["py.typed"], "s3balance.migrations": ["script.py.mako"]},
    install_requires=runtime_requirements(),
    entry_points={
        "console_scripts": [
            "s3balance-admin = s3balance.ops.cli:main",
            "s3balance-check = s3balance.ops.check:main",
        ],
    },
)
