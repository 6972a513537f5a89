"""Tell people when a cycle needs them: a JSON summary POSTed to a webhook and/or an email.

ANALYTICS_WEBHOOK_URL            POST the summary there (JSON)
ANALYTICS_SMTP_URL               smtp://[user:password@]host[:port] (STARTTLS with ?starttls=1),
                                 or smtps://... (TLS from the start)
ANALYTICS_NOTIFY_TO              comma-separated recipients of the email
ANALYTICS_NOTIFY_FROM            the email's sender (default analytics@<host>)
ANALYTICS_NOTIFY                 problems (default: after a cycle that failed or completed
                                 with errors) | always | never

A notification that cannot be delivered is logged and never fails the cycle. Passwords in
these URLs never appear in a message.
"""
from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import urllib.request
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from analytics.printable import printable
from runner.cycle import CycleResult
from jobs.job import COMPLETED_WITH_ERRORS, FAILED

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10


def cycle_status(cycle: CycleResult) -> str:
    statuses = {r.result.status for r in cycle.records}
    return FAILED if FAILED in statuses else COMPLETED_WITH_ERRORS if COMPLETED_WITH_ERRORS in statuses else "succeeded"


def summary(cycle: CycleResult) -> dict:
    return {
        "cycle_id": cycle.cycle_id,
        "as_of": cycle.as_of.isoformat(),
        "status": cycle_status(cycle),
        "host": socket.gethostname(),
        "rows_in": sum(r.result.rows_in for r in cycle.records),
        "rows_out": sum(r.result.rows_out for r in cycle.records),
        "rows_rejected": sum(r.result.rows_rejected for r in cycle.records),
        "jobs": [{"job": r.job, "district_id": r.district_id, "status": r.result.status,
                  "seconds": round(r.seconds, 2), "message": r.result.message} for r in cycle.records],
        "unconfigured_landing_folders": cycle.unconfigured,
    }


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def notify(cycle: CycleResult, env=os.environ) -> list[str]:
    """Send what is configured; return one line per attempt ("webhook: sent", ...)."""
    mode = env.get("ANALYTICS_NOTIFY", "problems")
    data = summary(cycle)
    if mode == "never" or (mode != "always" and data["status"] == "succeeded"):
        return []
    outcomes = []
    if url := env.get("ANALYTICS_WEBHOOK_URL"):
        outcomes.append(_attempt("webhook", _redacted(url), lambda: _post(url, data)))
    smtp, to = env.get("ANALYTICS_SMTP_URL"), env.get("ANALYTICS_NOTIFY_TO")
    if smtp and to:
        outcomes.append(_attempt("email", _redacted(smtp), lambda: _mail(smtp, to, data, env)))
    return outcomes


def _attempt(kind: str, where: str, send) -> str:
    try:
        send()
    except Exception as exc:  # a notification never fails the cycle
        log.warning("%s notification to %s failed: %s", kind, where, exc)
        return f"{kind}: failed ({type(exc).__name__})"
    log.info("%s notification sent to %s", kind, where)
    return f"{kind}: sent"


def _post(url: str, data: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(data).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        if response.status >= 300:
            raise RuntimeError(f"HTTP {response.status}")


def _mail(smtp_url: str, to: str, data: dict, env) -> None:
    parts = urlsplit(smtp_url)
    message = EmailMessage()
    message["Subject"] = f"[district analytics] cycle {data['cycle_id']} {data['status']}"
    message["From"] = env.get("ANALYTICS_NOTIFY_FROM", f"analytics@{socket.gethostname()}")
    message["To"] = to
    lines = [f"Cycle {data['cycle_id']} as of {data['as_of']} on {data['host']}: {data['status']}", ""]
    lines += [f"{j['job']} {j['district_id']}: {j['status']} {printable(j['message'])}".rstrip()
              for j in data["jobs"]]
    message.set_content("\n".join(lines) + "\n\n" + json.dumps(data, indent=2))
    client = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with client(parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 25), timeout=TIMEOUT_SECONDS) as s:
        if parse_qs(parts.query).get("starttls") == ["1"]:
            s.starttls()
        if parts.username:
            s.login(unquote(parts.username), unquote(parts.password or ""))
        s.send_message(message, to_addrs=[a.strip() for a in to.split(",") if a.strip()])
