"""
The daemon for C{twistd -ny s3balance.tac}.

The config file is taken from S3BALANCE_CONFIG, else etc/s3balance.example.yaml.
"""

import os

from twisted.application import service

from s3balance.daemon.service import makeService

application = service.Application("s3balance")
makeService(os.environ.get("S3BALANCE_CONFIG", "etc/s3balance.example.yaml")).setServiceParent(application)
