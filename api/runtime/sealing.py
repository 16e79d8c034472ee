"""The key that signs the seals: a file outside the database, made on first start."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from api.runtime.settings import Settings


class SealKeyError(Exception):
    pass


def seal_key_path(settings: Settings) -> Path:
    return settings.seal_key_file or settings.data_dir / "seal-key.pem"


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The key in `path`, made (mode 0600) when there is none.

    Several processes may start at once: the key is written to a file of its
    own and linked into place, so each either makes it or reads a whole one.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".seal-key-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            os.unlink(temp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SealKeyError(
            f"{path} may be read by other users (mode {mode:o}): chmod 600 it, it signs the seals"
        )
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SealKeyError(f"{path} holds no Ed25519 private key")
    return key
