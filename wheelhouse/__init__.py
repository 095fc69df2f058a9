"""wheelhouse: offline and reproducible Python installs, from a content-addressed store."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the module each lives in. Imported on first use (PEP 562):
# `wheelhouse --help` or a warm rebuild should not pay for modules it never touches.
_EXPORTS = {
    "AddResult": "wheelhouse.add",
    "add_paths": "wheelhouse.add",
    "BuildResult": "wheelhouse.build",
    "build": "wheelhouse.build",
    "ExportResult": "wheelhouse.bundle",
    "ImportResult": "wheelhouse.bundle",
    "export": "wheelhouse.bundle",
    "import_bundle": "wheelhouse.bundle",
    "verify_bundle": "wheelhouse.bundle",
    "GcResult": "wheelhouse.upkeep",
    "StoreUsage": "wheelhouse.upkeep",
    "disk_usage": "wheelhouse.upkeep",
    "gc": "wheelhouse.upkeep",
    "Store": "wheelhouse.store",
    "DistFilename": "wheelhouse.filenames",
    "parse_filename": "wheelhouse.filenames",
    "FileEntry": "wheelhouse.house",
    "House": "wheelhouse.house",
    "Manifest": "wheelhouse.house",
    "Target": "wheelhouse.targets",
    "expand_platform": "wheelhouse.targets",
    **dict.fromkeys(("BuildError", "BundleBaseError", "BundleError", "BundleIntegrityError", "DiskSpaceError", "FormatVersionError", "HashMismatchError", "HouseError", "IntegrityError", "InvalidDistributionError", "InvalidFilenameError", "InvalidInputError", "InvalidManifestError", "InvalidTargetError", "LockTimeoutError", "NetworkError", "PipError", "ResolutionError", "StoreError", "WheelhouseError"), "wheelhouse.errors"),
}

__all__ = [
    "AddResult",
    "BuildError",
    "BuildResult",
    "BundleBaseError",
    "BundleError",
    "BundleIntegrityError",
    "DiskSpaceError",
    "DistFilename",
    "ExportResult",
    "FileEntry",
    "FormatVersionError",
    "GcResult",
    "HashMismatchError",
    "House",
    "HouseError",
    "ImportResult",
    "IntegrityError",
    "InvalidDistributionError",
    "InvalidFilenameError",
    "InvalidInputError",
    "InvalidManifestError",
    "InvalidTargetError",
    "LockTimeoutError",
    "Manifest",
    "NetworkError",
    "PipError",
    "ResolutionError",
    "Store",
    "StoreError",
    "StoreUsage",
    "Target",
    "WheelhouseError",
    "__version__",
    "add_paths",
    "build",
    "disk_usage",
    "expand_platform",
    "export",
    "gc",
    "import_bundle",
    "parse_filename",
    "verify_bundle",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wheelhouse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from wheelhouse.add import AddResult, add_paths
    from wheelhouse.build import BuildResult, build
    from wheelhouse.bundle import (
        ExportResult,
        ImportResult,
        export,
        import_bundle,
        verify_bundle,
    )
    from wheelhouse.errors import (
        BuildError,
        BundleBaseError,
        BundleError,
        BundleIntegrityError,
        DiskSpaceError,
        FormatVersionError,
        HashMismatchError,
        HouseError,
        IntegrityError,
        InvalidDistributionError,
        InvalidFilenameError,
        InvalidInputError,
        InvalidManifestError,
        InvalidTargetError,
        LockTimeoutError,
        NetworkError,
        PipError,
        ResolutionError,
        StoreError,
        WheelhouseError,
    )
    from wheelhouse.filenames import DistFilename, parse_filename
    from wheelhouse.house import FileEntry, House, Manifest
    from wheelhouse.store import Store
    from wheelhouse.targets import Target, expand_platform
    from wheelhouse.upkeep import GcResult, StoreUsage, disk_usage, gc
