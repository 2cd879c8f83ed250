"""The demo shop's API credentials, kept as a merchant keeps its own: a file only its owner can read.

`flask seed-demo` issues the demo program an API key and writes it here, in the instance folder
beside the development secret key. Clicktrail keeps only a hash of the key, so this file is the one
place it exists; the shop reads it on every checkout, so seeding again takes effect at once.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "demo_shop.json"


class CredentialsMissing(Exception):
    """The shop cannot report sales: its credentials file is missing, unsafe or unreadable."""


@dataclass(frozen=True)
class ShopCredentials:
    program_id: int
    currency: str
    api_key: str
    signing_secret: str


def credentials_path(instance_path: str | Path) -> Path:
    """Where the shop's credentials live: in the instance folder."""
    return Path(instance_path) / FILE_NAME


def load(path: Path) -> ShopCredentials:
    """Read the credentials, refusing a file that others may read (as ssh refuses such a key)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        raise CredentialsMissing("The demo shop has no API key yet: run `flask --app wsgi seed-demo`.") from None
    except OSError as error:
        raise CredentialsMissing(f"The demo shop cannot read {path.name}: {error.strerror}.") from None
    if stat.S_IMODE(mode) & 0o077:
        raise CredentialsMissing(f"{path} holds an API key but others can read it; run `chmod 600 {path}`.")
    try:
        fields = json.loads(text)
        credentials = ShopCredentials(
            program_id=int(fields["program_id"]),
            currency=str(fields["currency"]),
            api_key=str(fields["api_key"]),
            signing_secret=str(fields["signing_secret"]),
        )
    except (ValueError, KeyError, TypeError):
        raise CredentialsMissing(f"{path.name} is not a demo shop credentials file; run seed-demo again.") from None
    return credentials


def save(path: Path, credentials: ShopCredentials) -> None:
    """Write the credentials with mode 0600, replacing the file in one step (a reader sees old or new)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(fd, 0o600)  # before writing: a file of that name left behind may have a wider mode
            json.dump(asdict(credentials), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
