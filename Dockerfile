# The district analytics service: `trigger.py --serve` runs a cycle daily at
# schedule.daily_at UTC. For cron-container mode, override the command with a plain cycle:
#   docker run --rm ... district-analytics        (see README, "Operations")
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends gnupg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# --build-arg WITH_DASK=1 adds the optional Dask extra, for an image that also runs
# `dask worker` (README, "Scaling out (Dask)"); the default image does without it.
ARG WITH_DASK=""
COPY requirements.txt requirements-dask.txt ./
RUN pip install --no-cache-dir -r requirements.txt ${WITH_DASK:+-r requirements-dask.txt}
COPY analytics/ analytics/
COPY jobs/ jobs/
COPY models/ models/
COPY config.py database.py demo.py lifecycle.py notify.py progress.py report.py service.py status.py trigger.py ./

RUN useradd --create-home --uid 10001 analytics && mkdir -p /data && chown analytics /data
USER analytics
WORKDIR /data
ENV PYTHONPATH=/app \
    DISTRICTS_FILE=/data/districts.yaml \
    LANDING_DIR=/data/landing \
    ANALYTICS_HEARTBEAT_FILE=/tmp/analytics-heartbeat \
    PYTHONUNBUFFERED=1

HEALTHCHECK --interval=5m --timeout=30s --start-period=30m --retries=2 \
  CMD ["python", "/app/trigger.py", "--health"]
ENTRYPOINT ["python", "/app/trigger.py"]
CMD ["--serve"]
