"""Fitted models on disk, so that a restarted replica, or one taking over a shard, forecasts
at once instead of refitting every model (imperative shell).

One directory per policy uid, one file per version of each (metric, recipe) model:
``<dir>/<uid>/<metric>-<recipe>/v<version>.model``. A file is a header line (JSON: format,
version, the SHA-256 of the payload, when and on how many points it was fitted), an
HMAC-SHA256 line over header and payload with a key from a Secret, and the payload: the
pickled `Fitted`. Pickle runs code when loaded, so bytes are unpickled only when their HMAC
verifies: a file this operator did not write (tampered, truncated, or written with another
key) is refused, logged and left out. Writes go to a temporary file renamed into place, so a
crash never leaves half a model. The newest ``keep`` versions are kept.

The directory is a volume: a ReadWriteOnce PVC serves one replica; replicas sharding on
Leases share a ReadWriteMany one (NFS, CephFS, EFS), so the replica that takes a shard over
reads the models its previous holder wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from foreseer.operator.forecasting import Fitted, Recipe

logger = logging.getLogger(__name__)

FORMAT = "foreseer-model/1"
KEEP = 2
"""Versions kept per model: the one in use and the one before it."""
MIN_KEY_BYTES = 16


class ModelRefused(Exception):
    """A stored model that fails its checks (HMAC, checksum, format); never unpickled."""


@dataclass(frozen=True)
class Stored:
    fitted: Fitted
    version: int


def recipe_digest(recipe: Recipe) -> str:
    """A stable name for a recipe: a model fitted for another recipe is another model."""
    text = json.dumps(dataclasses.asdict(recipe), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _safe(part: str) -> str:
    """A path component that cannot climb out of the store."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip(".") or "_"
    return cleaned[:100]


class ModelStore:
    """Versioned, authenticated fitted models in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], key: bytes, keep: int = KEEP) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the model store key must have at least {MIN_KEY_BYTES} bytes")
        self.directory = Path(directory)
        self._key = key
        self.keep = max(1, keep)

    @classmethod
    def from_key_file(cls, directory: str, key_file: str) -> ModelStore:
        """The store at ``directory`` with the key read from ``key_file`` (a mounted Secret)."""
        key = Path(key_file).read_bytes().strip()
        return cls(directory, key)

    def _folder(self, uid: str, metric: str, recipe: Recipe) -> Path:
        return self.directory / _safe(uid) / f"{_safe(metric)}-{recipe_digest(recipe)}"

    def _versions(self, folder: Path) -> list[int]:
        if not folder.is_dir():
            return []
        found = (re.fullmatch(r"v(\d+)\.model", p.name) for p in folder.iterdir())
        return sorted(int(m[1]) for m in found if m)

    def _sign(self, header: bytes, payload: bytes) -> bytes:
        return hmac.new(self._key, header + b"\n" + payload, hashlib.sha256).hexdigest().encode()

    def save(self, uid: str, metric: str, fitted: Fitted) -> int:
        """Write ``fitted`` as the next version of its model; returns the version."""
        folder = self._folder(uid, metric, fitted.recipe)
        folder.mkdir(parents=True, exist_ok=True)
        versions = self._versions(folder)
        version = (versions[-1] if versions else 0) + 1
        payload = pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL)
        header = json.dumps({
            "format": FORMAT, "version": version, "metric": metric,
            "sha256": hashlib.sha256(payload).hexdigest(), "fitted_at": fitted.fitted_at,
            "points": fitted.points}, sort_keys=True).encode()
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".partial-")
        with os.fdopen(descriptor, "wb") as out:
            out.write(header + b"\n" + self._sign(header, payload) + b"\n" + payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, folder / f"v{version}.model")
        for old in [*versions, version][:-self.keep]:
            (folder / f"v{old}.model").unlink(missing_ok=True)
        return version

    def read(self, path: Path) -> Stored:
        """One stored version, verified before it is unpickled; ModelRefused otherwise."""
        data = path.read_bytes()
        header, signature, payload = [*data.split(b"\n", 2), b"", b""][:3]
        if not hmac.compare_digest(signature, self._sign(header, payload)):
            raise ModelRefused(f"{path}: the HMAC does not verify (tampered, truncated, or "
                               "written with another key)")
        try:
            meta = json.loads(header)
        except ValueError as exc:
            raise ModelRefused(f"{path}: unreadable header") from exc
        if meta.get("format") != FORMAT:
            raise ModelRefused(f"{path}: format {meta.get('format')!r}, expected {FORMAT}")
        if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
            raise ModelRefused(f"{path}: the checksum does not match")
        try:
            fitted = pickle.loads(payload)  # authenticated above: these are our own bytes
        except (ImportError, AttributeError, TypeError, ValueError, pickle.UnpicklingError,
                EOFError) as exc:
            # Our own bytes, from a foreseer whose model classes differ from this one's (an
            # upgrade or a rollback of the operator): refit instead.
            raise ModelRefused(f"{path}: written by another version of foreseer "
                               f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(fitted, Fitted):
            raise ModelRefused(f"{path}: holds a {type(fitted).__name__}, not a fitted model")
        missing = [f"{type(value).__name__}.{field.name}"
                   for value in (fitted, getattr(fitted, "recipe", None))
                   if dataclasses.is_dataclass(value)
                   for field in dataclasses.fields(value) if not hasattr(value, field.name)]
        if missing or not isinstance(getattr(fitted, "recipe", None), Recipe):
            # Unpickled from an older Fitted or Recipe that lacked fields this one has.
            raise ModelRefused(f"{path}: written by another version of foreseer (no "
                               f"{', '.join(missing) or 'recipe'})")
        return Stored(fitted, int(meta["version"]))

    def load(self, uid: str, metric: str, recipe: Recipe) -> Stored | None:
        """The newest version that verifies of the model for (uid, metric, recipe), or None.
        A version that fails its checks is logged and skipped, never used."""
        folder = self._folder(uid, metric, recipe)
        for version in reversed(self._versions(folder)):
            try:
                stored = self.read(folder / f"v{version}.model")
            except (ModelRefused, OSError) as exc:
                logger.warning("refusing stored model %s/%s v%d: %s", uid, metric, version, exc)
                continue
            if stored.fitted.recipe == recipe:
                return stored
        return None

    def load_version(self, uid: str, metric: str, recipe: Recipe, version: int) -> Stored | None:
        """One version of the model, if it is still kept and verifies (for a rollback)."""
        path = self._folder(uid, metric, recipe) / f"v{version}.model"
        try:
            return self.read(path)
        except FileNotFoundError:
            return None
        except (ModelRefused, OSError) as exc:
            logger.warning("refusing stored model %s/%s v%d: %s", uid, metric, version, exc)
            return None

    def forget(self, uid: str) -> None:
        """Delete every model of a deleted policy."""
        shutil.rmtree(self.directory / _safe(uid), ignore_errors=True)
