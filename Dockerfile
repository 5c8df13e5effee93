# s3balance container image.
#   docker build -t s3balance .
#   docker run -p 8080:8080 -v $PWD/s3balance.yaml:/etc/s3balance/s3balance.yaml:ro s3balance
# The config must listen on 0.0.0.0 (server.host) to be reachable from outside
# the container.  Not built by CI (no Docker engine there); see docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 s3balance \
    && useradd --system --uid 10001 --gid s3balance --home-dir /var/lib/s3balance \
       --shell /usr/sbin/nologin s3balance \
    && install -d -o s3balance -g s3balance -m 0750 /var/lib/s3balance \
    && install -d -m 0755 /etc/s3balance

WORKDIR /src
# Requirements first, so a code change does not reinstall every dependency.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install -r requirements/runtime.txt
COPY . .
RUN pip install --no-deps . \
    # twistd finds the s3balance plugin through twisted/plugins; build its
    # cache now, as root, because the daemon's user cannot write site-packages.
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && twistd s3balance --help >/dev/null \
    && cd / && rm -rf /src

WORKDIR /var/lib/s3balance
USER s3balance:s3balance
EXPOSE 8080

# Healthy = /health answers 200 (some backend can take objects).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"]

# SIGTERM (docker stop) closes the port and lets transfers finish for
# server.shutdown_grace seconds: give `docker stop -t` at least that much.
STOPSIGNAL SIGTERM
CMD ["twistd", "--nodaemon", "--pidfile=", "--logfile=-", "s3balance", "--config", "/etc/s3balance/s3balance.yaml"]
