"""
Request authentication and body integrity, as pure logic (no I/O, no reactor).

  - L{s3balance.auth.sigv4}: verify AWS Signature Version 4 (header and presigned).
  - L{s3balance.auth.chunked}: decode and verify C{aws-chunked} bodies.
  - L{s3balance.auth.checksums}: verify Content-MD5, x-amz-content-sha256 and
    the x-amz-checksum-* values of a body.

Everything raises L{s3balance.errors.S3Error}.
"""
