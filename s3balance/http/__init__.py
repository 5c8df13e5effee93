"""HTTP plumbing under the S3 face: the server channel and site, the request, transport tuning."""
