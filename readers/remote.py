"""Remote places a district publishes to (README, "fetch"): listing what a source holds and
copying one object into the landing folder, through fsspec (s3fs for S3-compatible object
storage, paramiko for SFTP, aiohttp for HTTPS). No protocol code of our own.

A download goes to a hidden temporary name beside its target (discovery never reads hidden
files) and is renamed only once every byte the listing promised has arrived, so a cut
download is never ingested.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

BLOCK = 1 << 20


class RemoteError(Exception):
    """A source is misconfigured or refused (a host key, a missing variable, table or column):
    another attempt cannot mend it. The message is safe to log."""


class RemoteUnavailable(Exception):
    """A source or object could not be read this time (a cut download, an unreachable server):
    worth another attempt. The message is safe to log."""


@dataclass(frozen=True)
class RemoteObject:
    path: str  # as the filesystem names it (bucket/key, /path/file, the URL)
    relative: str  # below the source's root: where it lands under the source's folder
    size: int | None
    version: str  # ETag, checksum, or size and modification time


def filesystem(source):
    """(fsspec filesystem, root path) of a source. Credentials: the environment (AWS_* or a
    named profile for S3; the key file for SFTP)."""
    import fsspec

    parts = urlsplit(source.url)
    timeout = source.option("timeout_seconds", 60)
    if source.type == "s3":
        import s3fs

        client = {k: v for k, v in (("endpoint_url", source.option("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")),
                                    ("region_name", source.option("region"))) if v}
        fs = s3fs.S3FileSystem(profile=source.option("profile"), client_kwargs=client,
                               config_kwargs={"connect_timeout": timeout, "read_timeout": timeout,
                                              "retries": {"max_attempts": 1}},
                               skip_instance_cache=True, use_listings_cache=False)
        return fs, f"{parts.netloc}{parts.path}".rstrip("/")
    if source.type == "sftp":
        known = Path(source.option("known_hosts", "~/.ssh/known_hosts")).expanduser()
        host = parts.hostname if (parts.port or 22) == 22 else f"[{parts.hostname}]:{parts.port}"
        fs = fsspec.filesystem("sftp", host=parts.hostname, port=parts.port or 22,
                               username=source.option("username") or parts.username or os.environ.get("USER"),
                               key_filename=str(Path(source.option("key_file")).expanduser()), timeout=timeout,
                               banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                               look_for_keys=False, allow_agent=False, skip_instance_cache=True,
                               host_key_policy=known_hosts_policy(known),
                               disabled_algorithms={"keys": _other_key_types(read_known_hosts(known), host)})
        fs.ftp.get_channel().settimeout(timeout)  # every read and write, not only the connect
        return fs, parts.path or "/"
    import aiohttp

    fs = fsspec.filesystem("http", skip_instance_cache=True, client_kwargs={
        "timeout": aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)})
    return fs, source.url


def close(fs) -> None:
    """Close an SFTP connection (fsspec keeps it open otherwise, one per cycle under --serve)."""
    client = getattr(fs, "client", None)
    if client is not None and hasattr(client, "close"):
        client.close()


def read_known_hosts(path: Path):
    """paramiko HostKeys of a known_hosts file; @cert-authority and @revoked lines, comments and
    lines paramiko cannot read are left out (they refuse nothing they should not)."""
    import paramiko
    from paramiko.hostkeys import HostKeyEntry

    keys = paramiko.HostKeys()
    if not path.exists():
        return keys
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "@")):
            continue
        try:
            entry = HostKeyEntry.from_line(line)
        except Exception:  # InvalidHostKey, an unknown key type
            continue
        if entry is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    return keys


def _other_key_types(keys, host: str) -> list[str]:
    """Host-key algorithms not to negotiate: those known_hosts holds no key of for this host, so
    a server with several keys is asked for the one we know (as OpenSSH does)."""
    import paramiko

    known = set(keys.lookup(host) or {})
    if "ssh-rsa" in known:
        known |= {"rsa-sha2-256", "rsa-sha2-512"}
    if not known:
        return []
    return [k for k in paramiko.Transport._preferred_keys if k not in known]


def known_hosts_policy(path: Path):
    """paramiko's host-key check against a known_hosts file: a server whose key is not there,
    or differs, is refused (never trusted on first use)."""
    import paramiko

    class KnownHosts(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            known = read_known_hosts(path).lookup(hostname)
            if known is None or key.get_name() not in known:
                raise RemoteError(f"the host key of {hostname} is not in {path} (known_hosts): not connected")
            if known[key.get_name()] != key:
                raise RemoteError(f"the host key of {hostname} does not match {path} (known_hosts): not connected")

    return KnownHosts()


def listing(fs, root: str, source) -> list[RemoteObject]:
    """Every object under the source's root (a single https file: itself), with its version."""
    include = source.option("include", "*")
    if source.type == "https" and not root.endswith("/"):
        info = fs.info(root)
        name = PurePosixPath(urlsplit(root).path).name or "index"
        return [RemoteObject(root, name, info.get("size"), _version(info))]
    if source.type == "https":
        found = {}
        for link in fs.ls(root, detail=False):
            if not link.startswith(root) or link.endswith("/") or "?" in link or "#" in link:
                continue  # another site's link, a folder, a sort link (?C=N;O=D) or a signed query
            try:
                found[link] = fs.info(link)
            except Exception:  # a broken link costs only itself
                continue
    else:
        found = fs.find(root, detail=True)
    out = []
    prefix = root.rstrip("/") + "/"
    for path, info in sorted(found.items()):
        if info.get("type") == "directory":
            continue
        relative = path[len(prefix):] if path.startswith(prefix) else PurePosixPath(path).name
        if any(part.startswith(".") or part == ".." for part in PurePosixPath(relative).parts):
            continue  # a hidden object (a partial upload) or one that would land outside its folder
        if fnmatch.fnmatch(PurePosixPath(relative).name, include):
            out.append(RemoteObject(path, relative, info.get("size"), _version(info)))
    return out


def _version(info: dict) -> str:
    for key in ("ETag", "etag", "checksum", "sha256", "md5"):
        if info.get(key):
            return f"{key.lower()}:{str(info[key]).strip(chr(34))}"
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("Last-Modified")
    if hasattr(mtime, "timestamp"):
        mtime = int(mtime.timestamp())
    if mtime is None:  # nothing tells a change that keeps the size: fetched every time (ingest skips same bytes)
        return ""
    return f"size:{info.get('size')}:mtime:{mtime}"


def download(fs, obj: RemoteObject, target: Path) -> int:
    """Copy the object to `target` through a hidden temporary file; the bytes copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    copied = 0
    try:
        with fs.open(obj.path, "rb") as source, open(partial, "wb") as out:
            while block := source.read(BLOCK):
                out.write(block)
                copied += len(block)
        if obj.size is not None and copied != obj.size:
            raise RemoteUnavailable(f"{obj.relative}: the download stopped at {copied:,} of {obj.size:,} bytes")
        os.replace(partial, target)
        return copied
    finally:
        if partial.exists():
            partial.unlink()
