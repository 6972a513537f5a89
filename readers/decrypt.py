"""OpenPGP-encrypted landing files, decrypted with the real `gpg`.

The keyring is the one in GNUPGHOME; the passphrase comes from ANALYTICS_GPG_PASSPHRASE and
reaches gpg on a pipe (never on a command line, never in a message). The plaintext lives
only in a private temporary folder (mode 0700) that is removed when reading ends, whatever
happens; folders left by a process that was killed are removed by the next run.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "analytics-decrypt-"
GPG_TIMEOUT_SECONDS = 3600


class DecryptionError(Exception):
    """gpg could not produce the plaintext; the message is safe to log."""


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def remove_stale_folders(root: str | None = None) -> int:
    """Remove temporary folders left by decrypting processes that no longer run."""
    removed = 0
    base = Path(root or tempfile.gettempdir())
    for folder in base.glob(f"{PREFIX}*"):
        match = re.match(rf"{PREFIX}(\d+)-", folder.name)
        if not match or not folder.is_dir():
            continue
        pid = int(match[1])
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    if removed:
        log.warning("removed %d decryption folder(s) left by processes that were killed", removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def decrypted(path: Path) -> Iterator[Path]:
    """Decrypt `path` into a private temporary folder; yield the plaintext file's path."""
    passphrase = os.environ.get("ANALYTICS_GPG_PASSPHRASE")
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    except OSError as exc:
        raise DecryptionError(f"cannot make a private temporary folder to decrypt into: {exc}") from None
    try:
        plain = folder / "plaintext"
        command = [
            "gpg", "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback",
            "--passphrase-fd", "0", "--output", str(plain), "--decrypt", str(path),
        ]
        try:
            done = subprocess.run(
                command, input=(passphrase or "").encode(), capture_output=True, timeout=GPG_TIMEOUT_SECONDS,
            )
        except FileNotFoundError:
            raise DecryptionError("cannot decrypt: gpg is not installed") from None
        except subprocess.TimeoutExpired:
            raise DecryptionError(f"gpg did not finish within {GPG_TIMEOUT_SECONDS} s") from None
        messages = _redact(done.stderr.decode("utf-8", "replace"), passphrase).strip()
        # Trust the output, not only the status: an empty or missing plaintext is a failure.
        produced = plain.exists() and plain.stat().st_size > 0
        if done.returncode != 0 or not produced:
            # gpg's failure lines say why ("public key decryption failed: Bad passphrase",
            # "decryption failed: No secret key"); its "encrypted with ..." lines do not.
            lines = [line.removeprefix("gpg: ") for line in messages.splitlines() if line.startswith("gpg: ")]
            failures = [line for line in lines if not line.startswith("encrypted with")]
            detail = "; ".join(failures[-3:]) or ("no plaintext was produced" if done.returncode == 0 else "no output")
            hint = "" if passphrase else " (ANALYTICS_GPG_PASSPHRASE is not set)"
            raise DecryptionError(f"gpg could not decrypt the file: {detail}{hint}")
        yield plain
    finally:
        shutil.rmtree(folder, ignore_errors=True)
