# The district analytics service: `trigger.py --serve` runs a cycle daily at
# schedule.daily_at UTC. For cron-container mode, override the command with a plain cycle:
#   docker run --rm ... district-analytics        (see README, "Operations")
#
# /data is the service's folder. Mount a volume there that uid 10001 can write; for a host
# folder: `mkdir -p -m 700 /srv/analytics/data/gnupg && sudo chown -R 10001:10001 /srv/analytics/data`.
# It holds
#   districts.yaml   DISTRICTS_FILE (--onboard/--offboard rewrite it: the folder is written)
#   landing/         LANDING_DIR, the partners' files
#   gnupg/           GNUPGHOME, the keyring that decrypts .gpg files: mode 700, owned by uid
#                    10001. Import the service's secret key as that user, in the image:
#                    docker run --rm -i -v /srv/analytics/data:/data --entrypoint gpg \
#                      district-analytics --homedir /data/gnupg --batch --import < secret-key.asc
#   analytics.db     THE DEFAULT DATABASE: SQLite at /data/analytics.db, unless DATABASE_URL
#                    says otherwise (production: DATABASE_URL=postgresql+psycopg2://... in
#                    the --env-file, with the other secrets; deploy/analytics.env.example).
#                    Without a volume on /data it is lost with the container.
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
COPY config/ config/
COPY jobs/ jobs/
COPY lifecycle/ lifecycle/
COPY models/ models/
COPY readers/ readers/
COPY runner/ runner/
COPY service/ service/
COPY storage/ storage/
COPY trigger.py ./
# Installed as a package too, so `dask worker` and `dask scheduler` import it from any folder.
COPY pyproject.toml ./
RUN pip install --no-cache-dir --no-deps . && rm -rf build district_analytics.egg-info

# The user the service runs as: uid and gid 10001, whatever the base image's users are.
# /data/gnupg is made here for a named volume (Docker copies it, mode and owner, into an
# empty one) and for a container without a volume; a bind mount hides it (make it there).
RUN groupadd --gid 10001 analytics \
 && useradd --create-home --uid 10001 --gid 10001 analytics \
 && install -d -o analytics -g analytics -m 755 /data \
 && install -d -o analytics -g analytics -m 700 /data/gnupg
USER analytics
WORKDIR /data

# Where everything is, said here rather than left to the code's defaults.
ENV DATABASE_URL=sqlite:////data/analytics.db \
    DISTRICTS_FILE=/data/districts.yaml \
    LANDING_DIR=/data/landing \
    GNUPGHOME=/data/gnupg \
    ANALYTICS_HEARTBEAT_FILE=/tmp/analytics-heartbeat \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1

HEALTHCHECK --interval=5m --timeout=30s --start-period=30m --retries=2 \
  CMD ["python", "/app/trigger.py", "--health"]
ENTRYPOINT ["python", "/app/trigger.py"]
CMD ["--serve"]
