"""wheelhouse: offline and reproducible Python installs, from a content-addressed store."""

from wheelhouse.add import AddResult, add_paths
from wheelhouse.build import BuildResult, build
from wheelhouse.errors import (
    BuildError,
    FormatVersionError,
    HashMismatchError,
    HouseError,
    IntegrityError,
    InvalidDistributionError,
    InvalidFilenameError,
    InvalidInputError,
    InvalidTargetError,
    LockTimeoutError,
    NetworkError,
    PipError,
    StoreError,
    WheelhouseError,
)
from wheelhouse.filenames import DistFilename, parse_filename
from wheelhouse.house import FileEntry, House, Manifest
from wheelhouse.store import BlobMeta, Store
from wheelhouse.targets import Target, expand_platform

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "BlobMeta",
    "BuildError",
    "BuildResult",
    "DistFilename",
    "FileEntry",
    "FormatVersionError",
    "HashMismatchError",
    "House",
    "HouseError",
    "IntegrityError",
    "InvalidDistributionError",
    "InvalidFilenameError",
    "InvalidInputError",
    "InvalidTargetError",
    "LockTimeoutError",
    "Manifest",
    "NetworkError",
    "PipError",
    "Store",
    "StoreError",
    "Target",
    "WheelhouseError",
    "__version__",
    "add_paths",
    "build",
    "expand_platform",
    "parse_filename",
]
