# First version: one cycle per container start (cron-container mode). The operations issue
# adds --serve with a HEALTHCHECK.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends gnupg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY analytics/ analytics/
COPY jobs/ jobs/
COPY models/ models/
COPY config.py database.py demo.py report.py trigger.py ./

RUN useradd --create-home --uid 10001 analytics && mkdir -p /data && chown analytics /data
USER analytics
WORKDIR /data
ENV DISTRICTS_FILE=/data/districts.yaml \
    LANDING_DIR=/data/landing \
    PYTHONUNBUFFERED=1

ENTRYPOINT ["python", "/app/trigger.py"]
