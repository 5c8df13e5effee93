"""
One worker process of the multi-process mode (C{server.workers}): the same
service as the daemon, on its own C{SO_REUSEPORT} socket, started by
L{s3balance.daemon.workers.WorkerSupervisor} as
C{python -m s3balance.daemon.worker_process CONFIG INDEX}.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    config_path, index = argv[0], int(argv[1])
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from s3balance.daemon.service import makeService

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    service = makeService(config_path, reactor, worker_index=index)
    service.privilegedStartService()
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
