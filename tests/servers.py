"""Real servers on loopback for the fetch tests, each started by the test and stopped after it:
an S3-compatible server (moto's, from PyPI), OpenSSH's sshd (Debian's openssh-server) on a high
port with throwaway keys, and an HTTP server (the standard library's) that can cut a download
halfway."""
from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, what: str, seconds: float = 60) -> None:
    """Until the port accepts connections (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port}")


@contextlib.contextmanager
def s3_server():
    """moto's S3-compatible server; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        _wait_for(port, "the S3 server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def sshd(folder: Path, host_key_types: tuple[str, ...] = ("ed25519",), only_known: int | None = None):
    """OpenSSH's sshd on a high port, for the current user, with a throwaway host key and
    client key; yields (port, client key path, username, a known_hosts file with its host key)."""
    if not Path(SSHD).exists():
        raise RuntimeError("sshd is not installed: apt-get install -y openssh-server (the README's test command does)")
    folder.mkdir(parents=True, exist_ok=True)
    host_keys = [folder / f"host_key_{kind}" for kind in host_key_types]
    client_key = folder / "client_key"
    for key, kind in [*zip(host_keys, host_key_types), (client_key, "ed25519")]:
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "client_key.pub").read_text())
    os.chmod(authorized, 0o600)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
{chr(10).join(f"HostKey {k}" for k in host_keys)}
AuthorizedKeysFile {authorized}
PidFile {folder / 'sshd.pid'}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
""")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(folder / "sshd.log", "w"))
    try:
        _wait_for(port, "sshd")
        import getpass

        known = folder / "known_hosts"
        listed = host_keys if only_known is None else host_keys[only_known:only_known + 1]  # only that one
        known.write_text("".join(f"[127.0.0.1]:{port} " + Path(f"{k}.pub").read_text() for k in listed))
        yield port, client_key, getpass.getuser(), known
    finally:
        process.terminate()
        process.wait(timeout=30)


class _Handler(http.server.SimpleHTTPRequestHandler):
    cut: set[str] = set()  # paths whose body stops halfway

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip("/")
        if name in self.cut:
            body = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        super().do_GET()


@contextlib.contextmanager
def http_server(folder: Path, cut: set[str] = frozenset()):
    """An HTTP server of `folder` (directory listings as HTML); `cut`: files sent half."""
    handler = type("Handler", (_Handler,), {"cut": set(cut)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def reporting_table(url: str, watermark: str = "updated_at timestamptz"):
    """A schema of its own in PostgreSQL (`url`) holding the original product's reporting table
    (student_id, app, date, minutes and the watermark column); yields (engine, qualified name).
    The schema is dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    schema = f"reporting_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(sa.text(f'CREATE TABLE "{schema}".student_analytics_reporting (student_id text, app text, '
                             f'date date, minutes double precision, {watermark})'))
    try:
        yield admin, f"{schema}.student_analytics_reporting"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: postgresql)")
    return str(found if isinstance(found, str) else found[-1])


class PostgresCluster:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, trust auth, its own
    port on loopback, its socket in that folder), which the test can stop and start again as
    an outage. As root, the server runs as the `postgres` user (it refuses root)."""

    def __init__(self):
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="pgcluster-", dir="/tmp"))
        self.port = free_port()
        self.data = self.folder / "data"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self._as = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self._as, _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        subprocess.run([*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w",
                        "-t", "120", "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=180)
        _wait_for(self.port, "the test's PostgreSQL cluster", 120)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run([*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop"],
                       check=False, capture_output=True, timeout=180)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster():
    """A started PostgresCluster, removed after the block."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
