"""The one exception hierarchy: every error wheelhouse raises descends from WheelhouseError.

Every message says what went wrong, with the offending value, and — for a user
mistake — what to do next. The CLI maps the classes to exit codes in one place
(``EXIT_CODES`` below).
"""

from __future__ import annotations


class WheelhouseError(Exception):
    """Root of every error wheelhouse raises."""

    #: Exit code the CLI uses for this kind of failure.
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        #: What went wrong.
        self.message = message
        #: What the user can do about it, if anything.
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class Terminated(KeyboardInterrupt):
    """SIGTERM, where a command takes it as a Ctrl-C (to roll back); exit code 143."""


class InvalidInputError(WheelhouseError, ValueError):
    """The user handed us something we cannot accept (bad name, bad file, bad option)."""


class InvalidFilenameError(InvalidInputError):
    """A file name is not a valid, safe wheel or sdist name."""

    def __init__(self, filename: str, reason: str) -> None:
        #: The rejected file name.
        self.filename = filename
        #: Why it was rejected.
        self.reason = reason
        super().__init__(
            f"invalid distribution file name ({reason}): {filename!r}",
            hint="wheel names look like 'name-1.0-py3-none-any.whl', "
            "sdists like 'name-1.0.tar.gz'",
        )


class InvalidDistributionError(InvalidInputError):
    """A wheel or sdist whose contents are unreadable or disagree with its name."""

    def __init__(self, path: str, reason: str) -> None:
        #: The file that was read.
        self.path = path
        #: What is wrong with it.
        self.reason = reason
        super().__init__(f"{path}: not a valid distribution ({reason})")


class InvalidTargetError(InvalidInputError):
    """A target (Python version, platform, implementation, ABI) we cannot understand."""


class IntegrityError(WheelhouseError):
    """Bytes on disk are not the bytes they claim to be."""

    exit_code = 3


class HashMismatchError(IntegrityError):
    """A file's sha256 differs from the one expected."""

    def __init__(self, path: str, expected: str, actual: str, *,
                 hint: str = "the file was corrupted or changed; run 'wheelhouse verify' "
                 "and rebuild it") -> None:
        #: The file (or blob) that was checked.
        self.path = path
        #: The sha256 it should have.
        self.expected = expected
        #: The sha256 it has.
        self.actual = actual
        super().__init__(
            f"hash mismatch for {path}: expected sha256={expected}, got sha256={actual}",
            hint=hint,
        )


class HelperProcessError(WheelhouseError):
    """A helper process wheelhouse forked died, or its answer could not be read."""


class StoreError(WheelhouseError):
    """The content-addressed store cannot be used (missing, read-only, wrong format)."""


class HouseError(WheelhouseError):
    """A house cannot be read or written (not a directory, bad manifest, conflict)."""


class InvalidManifestError(HouseError):
    """A manifest holds lines that cannot be read: each is named by file and line."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        #: The manifest that was read.
        self.path = path
        #: ``(1-based line number, what is wrong)`` for each bad line, in order.
        self.problems = problems
        shown = [f"{path}:{line}: {reason}" for line, reason in problems[:20]]
        if len(problems) > 20:
            shown.append(f"... and {len(problems) - 20} more")
        super().__init__(
            shown[0] if len(shown) == 1 else
            f"{path}: {len(problems)} invalid lines in the manifest:\n  " + "\n  ".join(shown),
            hint="was it edited by hand? Fix the line(s) named, or restore the manifest "
            "(from a bundle, or build the house again)",
        )


def is_format(found: object, supported: int) -> bool:
    """True if *found* (a ``format`` read from JSON) is exactly version *supported*.

    ``true`` and ``1.0`` equal ``1`` in Python; neither is a format version.
    """
    return type(found) is int and found == supported


class FormatVersionError(WheelhouseError):
    """An on-disk format carries a version this wheelhouse does not know."""

    def __init__(self, what: str, path: str, found: object, supported: object) -> None:
        #: Which format (store, manifest, bundle).
        self.what = what
        #: Where it was read from.
        self.path = path
        #: The version found on disk.
        self.found = found
        #: The version(s) this wheelhouse understands.
        self.supported = supported
        if found is None:
            said = "has no format version"
        elif type(found) is not int:
            said = f"has a format version that is not a number ({found!r})"
        else:
            said = f"format version {found} is not supported"
        super().__init__(
            f"{path}: {what} {said} (this wheelhouse reads version {supported!r})",
            hint="upgrade wheelhouse, or point it at a different directory"
            if type(found) is int else "the file was edited or written by something else; "
            "restore it (a house's manifest: from a bundle, or build the house again)",
        )


class LockTimeoutError(WheelhouseError):
    """An exclusive lock could not be taken in time."""

    def __init__(self, lock_path: str, timeout: float) -> None:
        #: The lock file.
        self.lock_path = lock_path
        #: How long we waited, in seconds.
        self.timeout = timeout
        super().__init__(
            f"could not take the lock {lock_path} within {timeout:g}s",
            hint="another wheelhouse process is using it; wait for it to finish",
        )


class ResolutionError(WheelhouseError):
    """The requirements cannot be satisfied for a target (names the package and target)."""


class NetworkError(WheelhouseError):
    """A download or index request failed."""

    exit_code = 4


class BuildError(WheelhouseError):
    """Building a wheel from source failed."""

    exit_code = 5


class PipError(WheelhouseError):
    """A pip subprocess failed; keeps its argv, return code and the tail of stderr."""

    exit_code = 5

    def __init__(self, argv: list[str], returncode: int, stderr_tail: str,
                 stderr: str | None = None) -> None:
        #: The command that was run.
        self.argv = argv
        #: Its exit status.
        self.returncode = returncode
        #: The last lines it wrote to stderr.
        self.stderr_tail = stderr_tail
        #: All it wrote to stderr (to look for what kind of failure it was: a
        #: long traceback pushes pip's own words out of the tail).
        self.stderr = stderr if stderr is not None else stderr_tail
        super().__init__(
            f"pip failed with exit code {returncode}: {' '.join(argv)}\n{stderr_tail}".rstrip()
        )


class DiskSpaceError(WheelhouseError):
    """There is not enough free space to write what was asked (checked before writing)."""

    def __init__(self, path: str, needed: int, free: int) -> None:
        #: Where the bytes would go.
        self.path = path
        #: Bytes needed.
        self.needed = needed
        #: Bytes free there.
        self.free = free
        super().__init__(
            f"not enough disk space at {path}: {needed:,} bytes needed, {free:,} free",
            hint="free some space (wheelhouse gc reclaims unused blobs) or use another disk",
        )


class BundleError(WheelhouseError):
    """A bundle cannot be written, read or imported."""


class BundleIntegrityError(BundleError, IntegrityError):
    """A bundle is damaged or tampered with: a member altered, missing, unexpected or unsafe.

    Nothing from it enters the store or the house.
    """

    exit_code = 3

    def __init__(self, bundle: str, problems: list[str], *,
                 consequence: str = "nothing was imported",
                 hint: str = "ask for the bundle again and compare its sha256 with the one "
                 "printed by 'wheelhouse export'") -> None:
        #: The bundle file.
        self.bundle = bundle
        #: Every problem found.
        self.problems = problems
        said = f", {consequence}" if consequence else ""
        super().__init__(f"{bundle}: bad bundle{said}:\n  " + "\n  ".join(problems), hint=hint)


class BundleBaseError(BundleError):
    """A delta bundle needs files that neither the receiving house nor the store has."""

    def __init__(self, bundle: str, house: str, missing: list[str]) -> None:
        #: The delta bundle.
        self.bundle = bundle
        #: The house it was to be imported into.
        self.house = house
        #: ``files/NAME (sha256=...)`` for every missing file.
        self.missing = missing
        shown = missing[:20] + ([f"... and {len(missing) - 20} more"] if len(missing) > 20 else [])
        super().__init__(
            f"{bundle} is a delta, and {house} lacks {len(missing)} file(s) it builds on:\n  "
            + "\n  ".join(shown),
            hint="import the earlier bundles first (or a full bundle: "
            "'wheelhouse export HOUSE -o FULL.tar' without --since)",
        )
