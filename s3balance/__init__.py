"""s3balance: an S3-compatible load balancer on Twisted."""

__version__ = "0.1.0"
