"""OpenPGP-encrypted landing files, decrypted with the real `gpg`.

Only a file encrypted to the service's key (a public-key session key, as `gpg --encrypt
--recipient` makes) is accepted. A file that is not encrypted (`gpg --store`), only signed
(`gpg --sign`), or encrypted with a passphrase (`gpg --symmetric`, alone or beside a key) is
refused with its reason, before anything of it is decrypted: the service's passphrase is
never tried on a symmetric layer, so a landing folder is no oracle for guesses of it. When
the district names allowed senders (`gpg_senders`), the file must also carry a good
signature by one of them.

gpg is run twice, each time with a minimal environment (PATH, GNUPGHOME, LC_ALL: never the
service's own, which holds the passphrase and DATABASE_URL): `--list-packets --list-only`
shows the packets outside the encrypted part, without decrypting anything; `--decrypt`
reports what it does on `--status-fd` (gpg's doc/DETAILS), and the passphrase is written to
its `--command-fd` only when it asks for the passphrase of a secret key (NEED_PASSPHRASE,
then GET_HIDDEN), never on a command line, never in a message.

The plaintext lives only in a private temporary folder (mode 0700) that is removed when
reading ends, whatever happens; folders left by a process that was killed are removed by
the next run.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "analytics-decrypt-"
GPG_TIMEOUT_SECONDS = 3600
MAX_ANSWERS = 3  # passphrases given to one gpg run at most (gpg may ask again after a wrong one)
MAX_STDERR_BYTES = 64 * 1024  # gpg's messages kept for the error text (the last of them)

HOW_TO_SEND = "files must be encrypted to the service's key (gpg --encrypt --recipient <the service's key>)"
NOT_ACCEPTED = "not accepted: "


def _symmetric(also_to_a_key: bool = False) -> str:
    """The refusal of a file with a symmetric layer: the same words whatever its passphrase."""
    also = " as well as to a key" if also_to_a_key else ""
    return (f"{NOT_ACCEPTED}the file is encrypted with a passphrase (gpg --symmetric){also}, which the service "
            f"never tries; {HOW_TO_SEND}")


class DecryptionError(Exception):
    """gpg could not produce the plaintext, or the file is not one the service accepts; the
    message is safe to log."""


def gpg_environment(environ=None) -> dict[str, str]:
    """The whole environment a gpg child gets: where programs and the keyring are, and the C
    locale (English messages, as the errors quote them). Nothing else of the service's."""
    environ = os.environ if environ is None else environ
    home = environ.get("GNUPGHOME") or os.path.join(os.path.expanduser("~"), ".gnupg")
    return {"PATH": environ.get("PATH") or os.defpath, "GNUPGHOME": home, "LC_ALL": "C"}


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


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as gpg's status lines write it: upper-case hex, no spaces."""
    return "".join(text.split()).upper()


@contextmanager
def decrypted(path: Path, senders: Iterable[str] = ()) -> Iterator[Path]:
    """Decrypt `path` into a private temporary folder; yield the plaintext file's path.

    `senders`: fingerprints of primary keys (or of signing subkeys); when there are any, the
    file must carry a good signature by one of them. Raises DecryptionError, with the reason,
    for a file that is not encrypted to the service's key alone, or not so signed."""
    allowed = {normalize_fingerprint(s) for s in senders}
    passphrase = os.environ.get("ANALYTICS_GPG_PASSPHRASE")
    env = gpg_environment()
    _check_packets(path, env)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    except OSError as exc:
        raise DecryptionError(f"cannot make a private temporary folder to decrypt into: {exc}") from None
    try:
        plain = folder / "plaintext"
        run = _decrypt(path, plain, passphrase, env)
        messages = _redact(run.stderr, passphrase).strip()
        if run.refusal:
            raise DecryptionError(run.refusal)
        if "ERRSIG" in run.keywords and "DECRYPTION_OKAY" in run.keywords:  # gpg fails it: say why in our words
            raise DecryptionError(NOT_ACCEPTED + _unknown_signer(run, allowed))
        # Trust the output, not only the status: an empty or missing plaintext is a failure.
        produced = plain.exists() and plain.stat().st_size > 0
        if run.returncode != 0 or not produced or "DECRYPTION_OKAY" not in run.keywords \
                or "DECRYPTION_FAILED" in run.keywords:
            # gpg's failure lines say why ("public key decryption failed: Bad passphrase",
            # "decryption failed: No secret key"); its "encrypted with ..." lines do not.
            lines = [" ".join(line.removeprefix("gpg: ").split()) for line in messages.splitlines()
                     if line.startswith("gpg: ")]
            failures = [line for line in lines if not line.startswith("encrypted with")]
            detail = run.problem or "; ".join(failures[-3:]) or (
                "no plaintext was produced" if run.returncode == 0 else "no output")
            hint = "" if passphrase else " (ANALYTICS_GPG_PASSPHRASE is not set)"
            raise DecryptionError(f"gpg could not decrypt the file: {detail}{hint}")
        if problem := _accepted(run):
            raise DecryptionError(NOT_ACCEPTED + problem)
        if allowed and (problem := _signed_by(run, allowed)):
            raise DecryptionError(NOT_ACCEPTED + problem)
        yield plain
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the first run: which packets the file has, nothing decrypted ------------------------

_PACKET = re.compile(r"^:([a-z_ ]+?) packet:")
_ENCRYPTED_DATA = {"encrypted data", "aead encrypted"}  # SED/SEIPD (tags 9, 18), AEAD (tag 20)


def _check_packets(path: Path, env: dict[str, str]) -> None:
    """Refuse, by its packets, a file that is not public-key encrypted: `--list-only` lists
    the packets outside the encrypted part and decrypts nothing (no passphrase is given)."""
    command = ["gpg", "--batch", "--no-tty", "--list-only", "--list-packets", str(path)]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                              timeout=GPG_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise DecryptionError("cannot decrypt: gpg is not installed") from None
    except subprocess.TimeoutExpired:
        raise DecryptionError(f"gpg did not finish within {GPG_TIMEOUT_SECONDS} s") from None
    packets = [m[1] for m in map(_PACKET.match, done.stdout.decode("utf-8", "replace").splitlines()) if m]
    if not packets:  # not OpenPGP at all: the decryption says so in gpg's own words
        return
    names = set(packets)
    if "symkey enc" in names:
        raise DecryptionError(_symmetric(also_to_a_key="pubkey enc" in names))
    if not names & _ENCRYPTED_DATA:
        if names & {"signature", "onepass_sig"}:
            raise DecryptionError(NOT_ACCEPTED + "the file is only signed (gpg --sign), not encrypted; " + HOW_TO_SEND)
        raise DecryptionError(NOT_ACCEPTED + "the file is not encrypted (an OpenPGP file as gpg --store makes); "
                              + HOW_TO_SEND)
    others = sorted(names - _ENCRYPTED_DATA - {"pubkey enc", "marker"})
    if "pubkey enc" not in names or others or sum(p in _ENCRYPTED_DATA for p in packets) != 1:
        raise DecryptionError(NOT_ACCEPTED + "the file is not one message encrypted to a key (its packets: "
                              + ", ".join(packets[:10]) + "); " + HOW_TO_SEND)


# --- the second run: decrypt, answering gpg's questions on its status and command fds ----

@dataclass
class _Run:
    returncode: int = 0
    status: list[tuple[str, str]] = field(default_factory=list)  # (keyword, arguments) of each status line
    stderr: str = ""
    refusal: str | None = None  # the file is refused: gpg was stopped
    problem: str | None = None  # why gpg was stopped, if it was not a refusal

    @property
    def keywords(self) -> set[str]:
        return {keyword for keyword, _ in self.status}


def _decrypt(path: Path, plain: Path, passphrase: str | None, env: dict[str, str]) -> _Run:
    command = [
        "gpg", "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback", "--status-fd", "1",
        "--command-fd", "0", "--no-auto-key-retrieve", "--output", str(plain), "--decrypt", str(path),
    ]
    try:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env)
    except FileNotFoundError:
        raise DecryptionError("cannot decrypt: gpg is not installed") from None
    run = _Run()
    errors = bytearray()

    def read_errors() -> None:
        for block in iter(lambda: child.stderr.read(8192), b""):
            errors.extend(block)
            del errors[:-MAX_STDERR_BYTES]

    reader = threading.Thread(target=read_errors, daemon=True)
    reader.start()
    timed_out = threading.Event()

    def stop_on_time() -> None:
        timed_out.set()
        child.kill()

    timer = threading.Timer(GPG_TIMEOUT_SECONDS, stop_on_time)
    timer.start()
    try:
        _converse(child, run, passphrase)
    finally:
        if run.refusal or run.problem:
            child.kill()
        run.returncode = child.wait()
        timer.cancel()
        reader.join()
        for stream in (child.stdin, child.stdout, child.stderr):
            try:
                stream.close()
            except OSError:  # gpg was stopped before it read what was written
                pass
    if timed_out.is_set():
        raise DecryptionError(f"gpg did not finish within {GPG_TIMEOUT_SECONDS} s")
    run.stderr = errors.decode("utf-8", "replace")
    return run


def _converse(child: subprocess.Popen, run: _Run, passphrase: str | None) -> None:
    """Read gpg's status lines; answer a passphrase question only when it asks for a secret
    key's (NEED_PASSPHRASE), and stop it at a symmetric one (NEED_PASSPHRASE_SYM)."""
    asked = None  # the NEED_PASSPHRASE* line before the question
    answers = 0
    for raw in child.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line.startswith("[GNUPG:] "):
            continue
        keyword, _, rest = line[len("[GNUPG:] "):].partition(" ")
        if len(run.status) < 10_000:
            run.status.append((keyword, rest))
        if keyword.startswith("NEED_PASSPHRASE"):
            asked = keyword
            if keyword == "NEED_PASSPHRASE_SYM":  # never tried: no guess of a passphrase is ever answered
                run.refusal = _symmetric()
                return
        elif keyword.startswith("GET_"):
            if keyword != "GET_HIDDEN" or asked != "NEED_PASSPHRASE":
                run.problem = f"gpg asked something it should not ({keyword} {rest}): stopped"
                return
            if not passphrase:
                run.problem = "the service's secret key needs its passphrase"
                return
            if answers >= MAX_ANSWERS:
                run.problem = "public key decryption failed: Bad passphrase"
                return
            try:
                child.stdin.write(passphrase.encode() + b"\n")
                child.stdin.flush()
            except OSError:
                return
            answers += 1
            asked = None


def _accepted(run: _Run) -> str | None:
    """None when gpg decrypted one plaintext with a secret key of the keyring, after a
    public-key session key; else why not."""
    order = [keyword for keyword, _ in run.status]
    if "ENC_TO" not in order or "BEGIN_DECRYPTION" not in order:
        return "the file is not encrypted to a key; " + HOW_TO_SEND
    if order.count("PLAINTEXT") != 1:
        return "the file holds more than one plaintext, or one outside its encrypted part"
    begin, text, end = order.index("BEGIN_DECRYPTION"), order.index("PLAINTEXT"), order.index("DECRYPTION_OKAY")
    if not begin < text < end:
        return "the file holds a plaintext outside its encrypted part"
    return None


_BAD = {"BADSIG": "its signature is bad (the file was changed after it was signed)",
        "EXPSIG": "its signature has expired", "EXPKEYSIG": "it is signed by an expired key",
        "REVKEYSIG": "it is signed by a revoked key"}


def _signed_by(run: _Run, allowed: set[str]) -> str | None:
    """None when the file carries a good signature (GOODSIG, then VALIDSIG) by a key, or a
    subkey of a key, in `allowed`, and no bad one; else why not."""
    good, others = [], []
    verdict = None
    for keyword, rest in run.status:
        fields = rest.split()
        if keyword == "NEWSIG":
            verdict = None
        elif keyword in _BAD:
            return _BAD[keyword]
        elif keyword == "GOODSIG":
            verdict = keyword
        elif keyword == "VALIDSIG" and verdict == "GOODSIG" and fields:
            signer = {fields[0].upper(), fields[-1].upper()}  # the signing key, and its primary key
            (good if signer & allowed else others).append(fields[-1].upper())
    if good:
        return None
    if others:
        return f"it is signed by {', '.join(others)}, which is not one of the district's gpg_senders"
    return ("it is not signed, and the district accepts only files signed by one of its gpg_senders "
            "(gpg --local-user <the sender's key> --sign --encrypt --recipient <the service's key>)")


def _unknown_signer(run: _Run, allowed: set[str]) -> str:
    """Why a file whose signature gpg cannot check is refused: ERRSIG <keyid> <pkalgo>
    <hashalgo> <sig_class> <time> <rc> [<fpr>], rc 9 meaning the keyring lacks the key."""
    errors = [rest.split() for keyword, rest in run.status if keyword == "ERRSIG" and len(rest.split()) >= 6]
    if any(fields[5] != "9" for fields in errors):
        return "its signature cannot be checked (an algorithm gpg does not support, or a damaged signature)"
    keys = [fields[6] if len(fields) > 6 and fields[6] != "-" else fields[0] for fields in errors]
    fix = "import the sender's public key (gpg --import)" + (", and list its fingerprint in gpg_senders"
                                                             if allowed else "")
    return (f"it is signed by a key the service's keyring does not have ({', '.join(keys)}), so its signature "
            f"cannot be checked; {fix}")
