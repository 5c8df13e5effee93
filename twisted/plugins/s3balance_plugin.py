"""
twistd plugin: C{twistd -n s3balance --config /etc/s3balance/s3balance.yaml}.

Only the options and the IServiceMaker live here; the daemon is imported
when the service is made, so listing twistd's plugins stays cheap.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [
        ["config", "c", "/etc/s3balance/s3balance.yaml", "Path of the YAML configuration file."],
    ]


@implementer(IServiceMaker, IPlugin)
class S3BalanceServiceMaker:
    tapname = "s3balance"
    description = "S3-compatible load balancer over many S3 backends."
    options = Options

    def makeService(self, options):
        from s3balance.daemon.service import makeService

        return makeService(options["config"])


serviceMaker = S3BalanceServiceMaker()
