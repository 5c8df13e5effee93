from setuptools import setup

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
        "s3balance.migrations",
        "s3balance.migrations.versions",
        "twisted.plugins",
    ],
    # The Alembic folder lives at the top of the tree (migrations/) and is
    # installed as s3balance.migrations so the daemon finds it when installed.
    package_dir={"s3balance.migrations": "migrations"},
    package_data={"s3balance.migrations": ["script.py.mako"]},
    install_requires=[
        "twisted[tls]>=24.7",
        "treq>=24.9",
        "attrs",
        "zope.interface",
        "sqlalchemy>=2.0",
        "alembic>=1.13",
        "pyyaml",
        "prometheus-client",
        "botocore",
    ],
    extras_require={
        "postgres": ["psycopg2-binary"],
        "mysql": ["pymysql"],
    },
    entry_points={
        "console_scripts": [
            "s3balance-admin = s3balance.cli:main",
            "s3balance-check = s3balance.check:main",
        ],
    },
)
