"""The command line: parse, call the library, print, map errors to exit codes."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wheelhouse import __version__
from wheelhouse.errors import InvalidInputError, Terminated, WheelhouseError
from wheelhouse.house import FileEntry, House, removed_if_new_and_failed
from wheelhouse.store import Store, parse_sha256

if TYPE_CHECKING:
    from collections.abc import Sequence

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    r"""Make text from packages safe for a terminal: escape control characters.

    >>> clean("evil\\x1b[31mred")
    'evil\\\\x1b[31mred'
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _one_line(value: object) -> str:
    """A value (a path) to show inside a line: its line breaks escaped too."""
    return str(value).replace("\n", "\\x0a")


def _echo(text: str = "", *, err: bool = False) -> None:
    click.echo(clean(text), err=err)


class Context:
    """Options shared by every command."""

    def __init__(self, store: Path | None, verbose: int, quiet: bool) -> None:
        self.store_path = store
        self.verbose = verbose
        self.quiet = quiet

    def store(self, *, create: bool = True) -> Store:
        """Open the store the user chose (or the default)."""
        return Store.open(self.store_path, create=create)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wheelhouse")
@click.option(
    "--store",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="WHEELHOUSE_STORE",
    show_envvar=True,
    help="The content-addressed store (default: the per-user cache directory).",
)
@click.option("-v", "--verbose", count=True, help="Say more (repeat for debug output).")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.pass_context
def cli(ctx: click.Context, store: Path | None, verbose: int, quiet: bool) -> None:
    """Offline and reproducible Python installs: build, serve and carry wheel houses."""
    level = logging.WARNING if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=logging.ERROR if quiet else level, format="%(message)s")
    ctx.obj = Context(store, verbose, quiet)


house_option = click.option(
    "-o",
    "--house",
    "house_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The house directory to write (created if missing).",
)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@house_option
@click.option("-j", "--jobs", type=click.IntRange(1, 64), help="Files to process at once.")
@pass_ctx
def add(obj: Context, paths: tuple[Path, ...], house_path: Path, jobs: int | None) -> None:
    """Add wheels and sdists (files, or directories of them) to a house."""
    from wheelhouse.add import add_paths

    store = obj.store()
    with removed_if_new_and_failed(house_path):  # a failed add leaves no empty house
        house = House.open(house_path, create=True)
        result = add_paths(house, store, list(paths), jobs=jobs)
    if not obj.quiet:
        _echo(
            f"{house.root}: {len(result.added)} added ({len(result.added) - result.reused} "
            f"copied into the store, {result.reused} reused from it), "
            f"{len(result.unchanged)} already there"
        )


def _entry_json(e: FileEntry) -> dict[str, Any]:
    return e.to_dict()


@cli.command(name="ls")
@click.argument("house_path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the files as JSON.")
def ls(house_path: Path, as_json: bool) -> None:
    """List the files in a house."""
    manifest = House.open(house_path).read_manifest()
    if as_json:
        click.echo(json.dumps([_entry_json(e) for e in manifest.files], indent=1))
        return
    if not manifest.files:
        _echo("(empty house)")
        return
    width = max(len(e.filename) for e in manifest.files)
    for e in manifest.files:
        flags = " yanked" if e.yanked is not None else ""
        _echo(f"{e.filename:<{width}}  {_size(e.size):>9}  sha256:{e.sha256[:16]}{flags}")
    total = sum(e.size for e in manifest.files)
    _echo(f"{len(manifest.files)} file(s), {_size(total)}")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _digest_option(_ctx: click.Context, _param: click.Parameter,
                   value: str | None) -> str | None:
    """A bundle digest as export prints it: 64 hex digits (a ``sha256:`` prefix is allowed)."""
    if value is None:
        return None
    digest = value.strip().lower().removeprefix("sha256:").removeprefix("sha256=")
    try:
        return parse_sha256(digest)
    except WheelhouseError:
        raise click.BadParameter(
            f"{value!r} is not a sha256 digest: one has 64 hexadecimal digits, as "
            "'wheelhouse export' prints it") from None


@cli.command()
@click.argument("houses", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--with-store", is_flag=True, help="Also re-hash the store when houses are named."
)
@click.option(
    "--quarantine", is_flag=True, help="Move store blobs that fail to the store's quarantine/."
)
@click.option("--sha256", "bundle_sha256", metavar="HEX", callback=_digest_option,
              help="For a bundle: its sha256 must be this (the digest export printed).")
@pass_ctx
def verify(obj: Context, houses: tuple[Path, ...], with_store: bool, quarantine: bool,
           bundle_sha256: str | None) -> None:
    """Re-hash a store, houses or bundles; exit non-zero on any mismatch.

    With no HOUSE, checks the store. Every blob must hash to its name; every
    house file must match the manifest. A bundle file (from 'wheelhouse
    export') is checked member by member without importing it.
    """
    failed = False
    from wheelhouse.bundle import BUNDLE_SUFFIXES

    for named in houses:
        if not named.exists() and named.name.lower().endswith(BUNDLE_SUFFIXES):
            raise InvalidInputError(f"no such bundle: {named}",
                                    hint="check the name; 'ls' shows what is there")
    bundles = tuple(p for p in houses if p.is_file())
    houses = tuple(p for p in houses if not p.is_file())
    for path in bundles:
        failed |= not _verify_bundle(obj, path, bundle_sha256)
    if bundles and not houses and not with_store:
        if failed:
            raise click.exceptions.Exit(3)
        return
    if not houses or with_store:
        store = obj.store(create=False)
        report = store.verify(quarantine=quarantine)
        for bad in report.bad:
            actual = f"sha256={bad.actual}" if bad.actual else "unreadable"
            moved = f" (moved to {bad.quarantined_to})" if bad.quarantined_to else ""
            _echo(f"BAD  {bad.path}: named sha256={bad.expected}, content {actual}{moved}")
        if not obj.quiet:
            _echo(f"store {store.root}: {report.checked} blob(s), {len(report.bad)} bad")
        failed |= not report.ok
    for path in houses:
        house = House.open(path)
        problems = house.verify()
        for p in problems:
            _echo(f"BAD  {house.root / p.path}: {p.problem}")
        if not obj.quiet:
            count = len(house.read_manifest().files)
            _echo(f"house {house.root}: {count} file(s), {len(problems)} problem(s)")
        failed |= bool(problems)
    if failed:
        raise click.exceptions.Exit(3)


# -- carrying houses across an air gap, and store upkeep ---------------------


if TYPE_CHECKING:  # click 8.2+ makes ParamType generic; older clicks are not subscriptable
    _IntParam = click.ParamType[int]
    _FloatParam = click.ParamType[float]
else:
    _IntParam = _FloatParam = click.ParamType


class _SizeType(_IntParam):
    """A size such as 500M, 10G or 1.5GB."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        from wheelhouse.upkeep import parse_size

        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except WheelhouseError as e:
            self.fail(str(e), param, ctx)


class _AgeType(_FloatParam):
    """An age such as 30d, 12h or 2w."""

    name = "age"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        from wheelhouse.upkeep import parse_age

        if isinstance(value, float):
            return value
        try:
            return parse_age(str(value))
        except WheelhouseError as e:
            self.fail(str(e), param, ctx)


def _verify_bundle(obj: Context, path: Path, expect_sha256: str | None) -> bool:
    from wheelhouse.bundle import verify_bundle
    from wheelhouse.errors import IntegrityError

    try:
        report = verify_bundle(path, expect_sha256=expect_sha256)
    except IntegrityError as e:
        _echo(f"BAD  {e}")
        return False
    if not obj.quiet:
        bm = report.bundle_manifest
        kind = (f"delta on manifest sha256={bm.base_manifest_sha256} "
                f"({len(bm.base)} file(s) expected there)") if bm.is_delta else "full"
        _echo(f"bundle {path}: {len(report.manifest.files)} file(s), {len(bm.members)} "
              f"member(s), all match ({kind})")
        _echo(f"{report.sha256}  {path}")
    return True


@cli.command(name="export")
@click.argument("house_path", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The bundle to write: .tar (plain, the default), .tar.gz or .tar.zst.")
@click.option("--since", type=click.Path(path_type=Path, exists=True),
              help="Make a delta: only what the other side lacks. Name its wheelhouse.json, "
              "or the last bundle sent to it.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_ctx
def export_command(obj: Context, house_path: Path, output: Path, since: Path | None,
                   as_json: bool) -> None:
    """Write a house to one bundle file to carry across an air gap.

    Prints the bundle's sha256 last (sha256sum's format): read it to the
    receiving side, which checks it with 'wheelhouse verify BUNDLE --sha256 HEX'
    or 'wheelhouse import BUNDLE --sha256 HEX -o HOUSE'.
    """
    from wheelhouse.bundle import export

    started = time.monotonic()
    shown = [started]
    done = [0]

    def progress(name: str, size: int) -> None:
        done[0] += size
        now = time.monotonic()
        if not obj.quiet and sys.stderr.isatty() and now - shown[0] > 1:
            shown[0] = now
            _echo(f"[{now - started:6.1f}s] {_size(done[0])} written", err=True)

    result = export(house_path, output, since=since, progress=progress)
    if as_json:
        click.echo(json.dumps({
            "bundle": str(result.path), "sha256": result.sha256, "size": result.size,
            "files": result.files, "members": result.members, "skipped": result.skipped,
            "payload": result.payload, "delta": result.base_manifest_sha256 is not None,
            "base_manifest_sha256": result.base_manifest_sha256,
        }, indent=1))
        return
    if not obj.quiet:
        delta = (f"; a delta: {result.skipped} member(s) the other side has were left out"
                 if result.base_manifest_sha256 is not None else "")
        _echo(f"{result.path}: {result.files} distribution file(s) in the house, "
              f"{result.members} member(s) carried, {_size(result.size)}, "
              f"in {time.monotonic() - started:.1f} s{delta}")
        _echo(f"{result.sha256}  {result.path}")


@cli.command(name="import")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--house", "house_path", required=True, type=click.Path(path_type=Path),
              help="The house to write (created if missing; a delta needs the older house).")
@click.option("--sha256", "expect_sha256", metavar="HEX", callback=_digest_option,
              help="Refuse the bundle unless its sha256 is this (the digest export printed).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_ctx
def import_command(obj: Context, bundle: Path, house_path: Path, expect_sha256: str | None,
                   as_json: bool) -> None:
    """Import a bundle into a house: every member checked first, all or nothing."""
    from wheelhouse.bundle import import_bundle

    started = time.monotonic()
    result = import_bundle(bundle, house_path, store=obj.store(), expect_sha256=expect_sha256)
    if as_json:
        click.echo(json.dumps({
            "house": str(result.house), "files": result.files, "new_blobs": result.new_blobs,
            "new_bytes": result.new_bytes, "removed": result.removed, "delta": result.delta,
            "bundle_sha256": result.bundle_sha256,
        }, indent=1))
        return
    if not obj.quiet:
        kind = "delta" if result.delta else "bundle"
        _echo(f"{result.house}: {result.files} file(s) from the {kind}; {result.new_blobs} new "
              f"in the store ({_size(result.new_bytes)}), {result.removed} removed, "
              f"in {time.monotonic() - started:.1f} s")


@cli.command(name="gc")
@click.option("--dry-run", is_flag=True, help="Say what would go; change nothing.")
@click.option("--max-size", type=_SizeType(), metavar="SIZE",
              help="Then trim the least recently used blobs until the store holds at most "
              "SIZE (500M, 10G, 1.5GB).")
@click.option("--older-than", type=_AgeType(), metavar="AGE",
              help="Then trim blobs not used for AGE (30d, 12h, 2w).")
@click.option("--keep", "keep_houses", multiple=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Register this house first (one written before houses registered "
              "themselves, or moved). Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_ctx
def gc_command(obj: Context, dry_run: bool, max_size: int | None, older_than: float | None,
               keep_houses: tuple[Path, ...], as_json: bool) -> None:
    """Remove store blobs that no registered house uses.

    Houses register themselves with the store when add, build or import puts
    files in them; those that no longer exist are forgotten. gc waits for
    running builds, adds and imports (the store's use lock), so it never takes
    a blob one of them is about to link. Trimmed blobs are fetched again when
    next needed; houses keep their own links or copies.
    """
    from wheelhouse.dists import describe_blob
    from wheelhouse.upkeep import gc

    store = obj.store(create=False)
    for path in keep_houses:
        store.register_house(House.open(path).root)
    result = gc(store, dry_run=dry_run, max_size=max_size, older_than=older_than)
    if as_json:
        click.echo(json.dumps({
            "dry_run": result.dry_run, "removed": [b.sha256 for b in result.removed],
            "freed": result.freed, "disk_freed": result.disk_freed,
            "linked_elsewhere": result.linked_elsewhere,
            "kept": result.kept, "kept_size": result.kept_size,
            "forgotten": [str(p) for p in result.forgotten],
        }, indent=1))
        return
    verb = "would remove" if dry_run else "removed"
    if dry_run or obj.verbose:
        for b in result.removed:
            why = "trimmed" if b.referenced else "unused"
            used = time.strftime("%Y-%m-%d", time.localtime(b.last_use))
            # (Read from the blob itself: gone once removed.)
            known = describe_blob(store.blob_path(b.sha256)) if dry_run else None
            what = f"  {known[0]} {known[1]} ({known[2]})" if known is not None else ""
            _echo(f"{verb} {b.sha256}  {_size(b.size):>9}  last used {used} ({why}){what}")
    if not obj.quiet:
        for p in result.forgotten:
            _echo(f"{'would forget' if dry_run else 'forgot'} {_one_line(p)} (no longer a house)")
        linked = result.freed - result.disk_freed
        still = f" ({_size(linked)} of it still hard-linked by houses)" if linked else ""
        _echo(f"store {store.root}: {verb} {len(result.removed)} blob(s), "
              f"{_size(result.freed)}{still}; kept {result.kept} ({_size(result.kept_size)})")
        if result.linked_elsewhere:
            _echo(f"  kept {result.linked_elsewhere} blob(s) no registered house names but "
                  "another directory hard-links (register it with --keep DIR)")


def _why_missing(why: str) -> str:
    """One line from why a target could not be resolved: pip's last error, not only a heading."""
    lines = [line.strip() for line in why.splitlines() if line.strip()]
    if not lines:
        return "pip could not resolve it"
    errors = [line.removeprefix("ERROR:").strip() for line in lines[1:]
              if line.startswith("ERROR:")]
    reason = errors[-1] if errors else lines[1] if len(lines) > 1 else ""
    return f"{lines[0].rstrip(':')}: {reason}" if reason else lines[0]


@cli.command(name="du")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_ctx
def du_command(obj: Context, as_json: bool) -> None:
    """Show what the store holds, what each registered house uses, and what gc would free."""
    from wheelhouse.upkeep import disk_usage

    usage = disk_usage(obj.store(create=False))
    if as_json:
        click.echo(json.dumps({
            "store": str(usage.root), "blobs": usage.blobs, "size": usage.size,
            "referenced": usage.referenced, "referenced_size": usage.referenced_size,
            "linked_elsewhere": usage.linked_elsewhere,
            "linked_elsewhere_size": usage.linked_elsewhere_size,
            "unreferenced": usage.unreferenced, "unreferenced_size": usage.unreferenced_size,
            "houses": [{"path": str(h.path), "files": h.files, "size": h.size,
                        "blobs": h.blobs, "not_in_store": h.not_in_store}
                       for h in usage.houses],
            "gone": [str(p) for p in usage.gone],
        }, indent=1))
        return
    _echo(f"store {usage.root}: {usage.blobs} blob(s), {_size(usage.size)}")
    _echo(f"  used by houses:    {usage.referenced} blob(s), {_size(usage.referenced_size)}")
    if usage.linked_elsewhere:
        _echo(f"  linked elsewhere:  {usage.linked_elsewhere} blob(s), "
              f"{_size(usage.linked_elsewhere_size)} (no registered house; gc keeps them)")
    _echo(f"  unused (gc frees): {usage.unreferenced} blob(s), "
          f"{_size(usage.unreferenced_size)}")
    for h in usage.houses:
        extra = f", {h.not_in_store} blob(s) not in the store" if h.not_in_store else ""
        _echo(f"house {_one_line(h.path)}: {h.files} file(s), {_size(h.size)}{extra}")
    for p in usage.gone:
        _echo(f"gone  {_one_line(p)} (gc forgets it)")


@cli.command(name="build")
@click.argument("requirements", nargs=-1)
@click.option("-r", "--requirement", "requirement_files", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="A requirements file (nested -r/-c, --hash and index options honoured).")
@click.option("-c", "--constraint", "constraint_files", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False), help="A constraints file.")
@house_option
@click.option("--python-version", "python_versions", multiple=True, metavar="X.Y[.Z]",
              help="Target Python version (repeatable); X.Y is X.Y.0 for Requires-Python "
              "and markers, as in pip.")
@click.option("--platform", "platforms", multiple=True, metavar="TAG",
              help="Target platform tag or uv platform name (repeatable); every "
              "combination with --python-version is a target.")
@click.option("--python-platform", "python_platforms", multiple=True, metavar="NAME",
              help="uv-style platform name such as aarch64-unknown-linux-gnu (repeatable).")
@click.option("--implementation", metavar="IMPL", help="Target implementation (cp, pp).")
@click.option("--abi", metavar="ABI", help="Target ABI tag (cp312, cp313t, ...).")
@click.option("-i", "--index-url", help="Base URL of the package index (as pip's).")
@click.option("--extra-index-url", multiple=True, help="Extra index URL (as pip's).")
@click.option("-f", "--find-links", multiple=True, help="Find-links location (as pip's).")
@click.option("--no-index", is_flag=True, help="Ignore package indexes (as pip's).")
@click.option("--only-binary", multiple=True, help="As pip's --only-binary.")
@click.option("--no-binary", multiple=True, help="As pip's --no-binary.")
@click.option("--pre", is_flag=True, help="Include pre-releases (as pip's).")
@click.option("--isolated", is_flag=True, help="Ignore pip's configuration (files and PIP_* variables).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), help="Parallel downloads.")
@click.option("--offline", is_flag=True,
              help="Never touch the network: reuse the last resolution and the store.")
@click.option("--refresh", is_flag=True, help="Resolve again even if nothing changed.")
@click.option("--allow-missing", is_flag=True,
              help="Report targets that cannot be served instead of failing.")
@click.option("--project", "project_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Take the dependencies of the project in DIR (its pyproject.toml).")
@click.option("--extra", "extras", multiple=True,
              help="With a pyproject.toml: also this optional-dependencies extra.")
@click.option("--group", "groups", multiple=True,
              help="With a pyproject.toml: also this PEP 735 dependency group.")
@click.option("--sdists", "keep_sdists", is_flag=True,
              help="Keep the sdists wheels were built from, with their build dependencies.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_ctx
def build_command(
    obj: Context, requirements: tuple[str, ...], requirement_files: tuple[Path, ...],
    constraint_files: tuple[Path, ...], house_path: Path, python_versions: tuple[str, ...],
    platforms: tuple[str, ...], python_platforms: tuple[str, ...], implementation: str | None,
    abi: str | None, index_url: str | None, extra_index_url: tuple[str, ...],
    find_links: tuple[str, ...], no_index: bool, only_binary: tuple[str, ...],
    no_binary: tuple[str, ...], pre: bool, isolated: bool, jobs: int | None, offline: bool,
    refresh: bool, allow_missing: bool, project_dir: Path | None, extras: tuple[str, ...],
    groups: tuple[str, ...], keep_sdists: bool, as_json: bool,
) -> None:
    """Build a house from requirements: resolve, download or build, index, lock.

    With no target options the house serves this interpreter. The house gets a
    report (wheelhouse-report.json) and, per target, a lock under locks/ whose
    hashes are exactly the house's files.
    """
    from wheelhouse.build import build
    from wheelhouse.targets import Target

    pip_options: list[str] = []
    if index_url:
        pip_options += ["--index-url", index_url]
    for url in extra_index_url:
        pip_options += ["--extra-index-url", url]
    for link in find_links:
        pip_options += ["--find-links", link]
    if no_index:
        pip_options.append("--no-index")
    for value in only_binary:
        pip_options.append(f"--only-binary={value}")
    for value in no_binary:
        pip_options.append(f"--no-binary={value}")
    if pre:
        pip_options.append("--pre")
    all_platforms = [*platforms, *python_platforms]
    targets: list[Target] = []
    if python_versions or all_platforms or implementation or abi:
        for version in python_versions or (None,):
            for platform in all_platforms or (None,):
                targets.append(Target.parse(python_version=version, platform=platform,
                                            implementation=implementation, abi=abi))
    started = time.monotonic()

    def progress(line: str) -> None:
        # On a terminal only: piped output stays quiet (and --json stays pure JSON).
        if not obj.quiet and sys.stderr.isatty():
            _echo(f"[{time.monotonic() - started:6.1f}s] {line}", err=True)

    if project_dir is not None:
        requirement_files = (*requirement_files, project_dir / "pyproject.toml")
    result = build(
        requirements, house=house_path, requirement_files=requirement_files,
        extras=extras, groups=groups, keep_sdists=keep_sdists,
        constraint_files=constraint_files, targets=targets, store=obj.store(),
        pip_options=pip_options, jobs=jobs, offline=offline, refresh=refresh,
        isolated=isolated, allow_missing=allow_missing, progress=progress,
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return
    if not obj.quiet:
        for name, entries in result.targets.items():
            _echo(f"{name}: {len(entries)} file(s)")
        for name, why in result.missing.items():
            _echo(f"MISSING {name}: {_why_missing(why)}")
        how = "from the last resolution (no network)" if result.from_cache else (
            f"{len(result.downloaded)} downloaded, {len(result.built)} built, "
            f"{len(result.reused)} reused from the store")
        _echo(f"{result.house}: {how} in {result.seconds:.2f} s")


@cli.command(name="lock")
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("-r", "--requirement", "requirement_files", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False), help="A requirements.in file.")
@click.option("-c", "--constraint", "constraint_files", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False), help="A constraints file.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="The lock file to write (requirements.txt).")
@click.option("-i", "--index-url", help="Base URL of the package index (as pip's).")
@click.option("--extra-index-url", multiple=True, help="Extra index URL (as pip's).")
@click.option("-f", "--find-links", multiple=True, help="Find-links location (as pip's).")
@click.option("--pre", is_flag=True, help="Allow pre-releases.")
@click.option("-U", "--upgrade", is_flag=True, help="Take the newest allowed versions.")
@click.option("--python-version", metavar="X.Y", help="Not possible with pip-tools (explains why).")
@click.option("--platform", metavar="TAG", help="Not possible with pip-tools (explains why).")
@pass_ctx
def lock_command(
    obj: Context, sources: tuple[Path, ...], requirement_files: tuple[Path, ...],
    constraint_files: tuple[Path, ...], output: Path, index_url: str | None,
    extra_index_url: tuple[str, ...], find_links: tuple[str, ...], pre: bool, upgrade: bool,
    python_version: str | None, platform: str | None,
) -> None:
    """Lock requirements with pip-tools: every version pinned, every file hashed."""
    from wheelhouse.lock import lock

    pip_options: list[str] = []
    if index_url:
        pip_options += ["--index-url", index_url]
    for url in extra_index_url:
        pip_options += ["--extra-index-url", url]
    for link in find_links:
        pip_options += ["--find-links", link]
    if pre:
        pip_options.append("--pre")
    result = lock([*sources, *requirement_files], output=output,
                  constraint_files=constraint_files, pip_options=pip_options, upgrade=upgrade,
                  python_version=python_version, platform=platform)
    if not obj.quiet:
        _echo(f"{result.output}: {result.pins} project(s) pinned with hashes")


@cli.command()
@click.argument("house_path", type=click.Path(path_type=Path))
@pass_ctx
def index(obj: Context, house_path: Path) -> None:
    """Rewrite a house's simple index (simple/, find-links.html) from its manifest.

    Pages already right are left alone; anything else under simple/ is removed.
    """
    # The manifest is read and checked by reindex, under the lock: not twice.
    stats = House.open(house_path, validate=False).reindex()
    if not obj.quiet:
        _echo(f"{house_path}: {stats.rendered} page(s), {stats.written} written, "
              f"{stats.removed} stray entr{'y' if stats.removed == 1 else 'ies'} removed")


@cli.command()
@click.argument("house_path", type=click.Path(path_type=Path))
@click.argument("selector", metavar="FILE_OR_SPEC")
@click.option("--reason", default="", help="Why (shown by pip when it picks a yanked file).")
@click.option("--undo", is_flag=True, help="Un-yank instead.")
@pass_ctx
def yank(obj: Context, house_path: Path, selector: str, reason: str, undo: bool) -> None:
    """Yank files (PEP 592): pip and uv skip them unless pinned exactly.

    FILE_OR_SPEC is a file name in the house, or a requirement such as
    'demo==1.0' (every file of the matching versions).
    """
    changed = House.open(house_path).yank(selector, reason=reason, undo=undo)
    if not obj.quiet:
        for e in changed:
            _echo(f"{'un-yanked' if undo else 'yanked'} {e.filename}")


@cli.command()
@click.argument("house_path", type=click.Path(path_type=Path))
@click.argument("selector", metavar="FILE_OR_SPEC")
@pass_ctx
def remove(obj: Context, house_path: Path, selector: str) -> None:
    """Remove files from a house and its index (the store keeps the blobs).

    FILE_OR_SPEC is a file name in the house, or a requirement such as 'demo<2'.
    """
    removed = House.open(house_path).remove(selector)
    if not obj.quiet:
        for e in removed:
            _echo(f"removed {e.filename}")


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


@cli.command(name="serve")
@click.argument("house_path", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 to let a Docker build reach the host).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--print-env", is_flag=True, help="Print the pip/uv variables as shell exports.")
@pass_ctx
def serve_command(obj: Context, house_path: Path, host: str, port: int, print_env: bool) -> None:
    """Serve a house over HTTP until interrupted (GET/HEAD only, nothing outside the house)."""
    import signal
    import threading

    from wheelhouse.serve import (
        DROPPED_ENV,
        HouseServer,
        _open_house,
        _pip_trusted_host,
        environment_for,
    )

    server = HouseServer(_open_house(house_path), host, port)
    url = server.url
    if print_env:
        for key in sorted(DROPPED_ENV):
            click.echo(f"unset {key}")
        for key, value in sorted(environment_for(url, {}).items()):
            if key == "PIP_TRUSTED_HOST":
                # Added to the value of the shell that reads these lines (space-separated).
                click.echo(f'export {key}="${{{key}:+${key} }}"{_shell_quote(value)}')
            else:
                click.echo(f"export {key}={_shell_quote(value)}")
        sys.stdout.flush()
    elif not obj.quiet:
        if server.all_interfaces:
            # The URL is this machine's loopback: true here, not for the others.
            listen, port = server.server_address[:2]
            _echo(f"serving {server.house.root} on every interface ({listen!s}) at port {port}")
            here = url.removeprefix("http://").rpartition(":")[0]
            _echo(f"  from this machine: {url} (from another, this machine's name or "
                  f"address instead of {here})")
        else:
            _echo(f"serving {server.house.root} at {url}")
        trusted = _pip_trusted_host(url)
        # (pip ignores plain http from a host that is not loopback unless told to trust it.)
        trust = f"--trusted-host {_shell_quote(trusted)} " if trusted else ""
        _echo(f"  pip install {trust}--index-url {url}/simple/ PACKAGE")
        _echo(f"  pip install {trust}--no-index --find-links {url}/find-links.html PACKAGE")
        _echo(f"  uv pip install --default-index {url}/simple/ PACKAGE")
        _echo("Ctrl-C or SIGTERM stops it.")
        sys.stdout.flush()

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@cli.command(name="run", context_settings={"ignore_unknown_options": True,
                                           "allow_interspersed_args": False})
@click.argument("house_path", type=click.Path(path_type=Path))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
def run_cmd(house_path: Path, command: tuple[str, ...], host: str, port: int) -> None:
    """Serve a house for the length of COMMAND, which installs from it and nothing else.

    Sets PIP_NO_INDEX, PIP_FIND_LINKS (the house's find-links page),
    PIP_INDEX_URL, an empty PIP_EXTRA_INDEX_URL, uv's UV_DEFAULT_INDEX and
    UV_INDEX_URL (the house as uv's one index), UV_NO_CONFIG, and
    PIP_TRUSTED_HOST when --host is not loopback; drops the UV_FIND_LINKS,
    UV_NO_INDEX, UV_INDEX and UV_EXTRA_INDEX_URL the environment had (uv
    honours yanks on an index page, not on a find-links page). Then exits
    with COMMAND's status:

        wheelhouse run ./house -- pip install -r requirements.txt
    """
    from wheelhouse.serve import run_command

    args = list(command)
    if args and args[0].startswith("-") and args[0] != "--" and "--" in args:
        # 'run HOUSE --port 8080 -- pip ...': run's own options after HOUSE, before
        # the '--' that starts the command. Taken as options; anything else there
        # is an error (it is not clear whose it is).
        own, args = args[:args.index("--")], args[args.index("--") + 1:]
        host, port = _run_options_after_house(own, host, port)
    elif args and args[0] == "--":
        args = args[1:]
    elif args and args[0].partition("=")[0] in ("--host", "--port"):
        raise click.UsageError(
            f"{args[0]} after HOUSE is taken for the command; put run's options before HOUSE, "
            "or end them with '--' (wheelhouse run HOUSE --port N -- COMMAND ...)")
    code = run_command(house_path, args, host=host, port=port)
    if code == 127:
        _echo(f"error: command not found: {args[0]}", err=True)
    elif code == 126 and _not_runnable(args[0]):
        _echo(f"error: cannot run {args[0]}: permission denied (not an executable program)",
              err=True)
    raise click.exceptions.Exit(code)


def _run_options_after_house(words: list[str], host: str, port: int) -> tuple[str, int]:
    """``--host``/``--port`` given between HOUSE and ``--``."""
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=")
        if name not in ("--host", "--port"):
            raise click.UsageError(
                f"{word!r} before '--': only --host and --port may go there; the command "
                "goes after '--' (wheelhouse run HOUSE [--port N] -- COMMAND ...)")
        if not eq:
            if i + 1 >= len(words):
                raise click.UsageError(f"{name} needs a value")
            value = words[i + 1]
            i += 1
        if name == "--host":
            host = value
        else:
            try:
                port = int(value)
            except ValueError:
                raise click.UsageError(f"--port takes a number, not {value!r}") from None
            if not 0 <= port <= 65535:
                raise click.UsageError(f"--port {port} is not in 0..65535")
        i += 1
    return host, port


def _not_runnable(command: str) -> bool:
    """True when *command* names a file that cannot be executed (what 126 means here)."""
    import os
    import shutil

    path = Path(command if os.sep in command else shutil.which(command) or command)
    return path.exists() and (path.is_dir() or not os.access(path, os.X_OK))


def _wanted(house_path: Path, requirements: tuple[str, ...],
            requirement_files: tuple[Path, ...], constraint_files: tuple[Path, ...],
            pre: bool) -> Any:
    from wheelhouse.house import House
    from wheelhouse.requirements import (
        RequirementLine,
        refuse_requirements_file_as_requirement,
        scan_requirement_files,
    )
    from wheelhouse.resolver import WantedSet, locked_versions, map_built_paths

    refuse_requirements_file_as_requirement(requirements)
    scan = scan_requirement_files(list(requirement_files), constraints=constraint_files)
    given = [RequirementLine(text, (), "command line") for text in requirements]
    lines = [*scan.lines, *given]
    if any(line.text.startswith((".", "/", "~", "file:")) or "://" in line.text
           or "/" in line.text for line in lines):
        # Paths and URLs build accepted: the files the house built from them.
        house = House.open(house_path)
        lines = map_built_paths(lines, house.read_manifest().files, locked_versions(house.root))
    wanted = WantedSet.from_lines(lines[:len(scan.lines)], pre=pre,
                                  require_hashes=scan.require_hashes,
                                  no_require_hashes=scan.no_require_hashes,
                                  release_switches=scan.release_control)
    for line in lines[len(scan.lines):]:
        wanted.add(line.text)
    if not wanted.requirements:
        raise click.UsageError("name what to install: REQ arguments or -r FILE")
    return wanted


_REQ_OPTIONS = [
    click.argument("requirements", nargs=-1),
    click.option("-r", "--requirement", "requirement_files", multiple=True,
                 type=click.Path(path_type=Path, dir_okay=False),
                 help="A requirements file (nested -r/-c and --hash honoured)."),
    click.option("-c", "--constraint", "constraint_files", multiple=True,
                 type=click.Path(path_type=Path, dir_okay=False), help="A constraints file."),
    click.option("--pre", is_flag=True, help="Allow pre-releases (as pip's)."),
]


def _req_options(f: Any) -> Any:
    for decorator in reversed(_REQ_OPTIONS):
        f = decorator(f)
    return f


@cli.command(name="install")
@click.argument("house_path", metavar="HOUSE", type=click.Path(path_type=Path))
@_req_options
@click.option("--python", "python", metavar="PATH",
              help="The interpreter to install for (default: the active virtual environment).")
@click.option("--prefix", type=click.Path(path_type=Path, file_okay=False),
              help="Install under this prefix (as pip's --prefix).")
@click.option("--target", "target_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Install packages into this directory (as pip's --target).")
@click.option("--no-compile", is_flag=True, help="Do not compile bytecode.")
@click.option("--break-system-packages", is_flag=True,
              help="Allow installing into a system (non-virtual-environment) interpreter.")
@click.option("--dry-run", is_flag=True, help="Show what would be installed; change nothing.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64),
              help="Wheels written at once (processes on Linux, threads elsewhere; "
              "default: the CPU count, at most 8).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_ctx
def install_command(
    obj: Context, house_path: Path, requirements: tuple[str, ...],
    requirement_files: tuple[Path, ...], constraint_files: tuple[Path, ...], pre: bool,
    python: str | None, prefix: Path | None, target_dir: Path | None, no_compile: bool,
    break_system_packages: bool, dry_run: bool, jobs: int | None, as_json: bool,
) -> None:
    """Install from HOUSE into an environment: no pip, no network.

    Resolves the requirements' closure from the house alone and installs as the
    installer library does, checking every wheel (sha256, paths, every member
    against RECORD) as it is read; any failure undoes the whole install.
    Exact versions already installed are skipped; others are replaced.
    """
    from wheelhouse.install import install

    wanted = _wanted(house_path, requirements, requirement_files, constraint_files, pre)
    report = install(house_path, wanted, python=python, prefix=prefix, target=target_dir,
                     compile_bytecode=not no_compile,
                     break_system_packages=break_system_packages, dry_run=dry_run, jobs=jobs)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
        return
    if obj.quiet:
        return
    for name in report.completed:
        _echo(f"{'would complete' if dry_run else 'completed'} the interrupted install of {name}")
    verb = "would install" if dry_run else "installed"
    for name, old, new in report.replaced:
        _echo(f"{'would replace' if dry_run else 'replaced'} {name} {old} -> {new}")
    if report.installed:
        _echo(f"{verb} {len(report.installed)}: " + ", ".join(
            f"{n}-{v}" for n, v, _ in report.installed))
    if report.skipped:
        _echo(f"already installed {len(report.skipped)}: " + ", ".join(
            f"{n}-{v}" for n, v in report.skipped))
    if not dry_run:
        where = target_dir or prefix
        into = (f"{where.absolute()} (files for {report.interpreter})" if where is not None
                else str(report.interpreter))
        _echo(f"into {into} in {report.seconds:.2f} s")


@cli.command(name="check")
@click.argument("house_path", metavar="HOUSE", type=click.Path(path_type=Path))
@_req_options
@click.option("--python-version", "python_versions", multiple=True, metavar="X.Y[.Z]",
              help="Target Python version (repeatable); X.Y is X.Y.0 for Requires-Python "
              "and markers, as in pip.")
@click.option("--platform", "platforms", multiple=True, metavar="TAG",
              help="Target platform tag or uv platform name (repeatable).")
@click.option("--implementation", metavar="IMPL", help="Target implementation (cp, pp).")
@click.option("--abi", metavar="ABI", help="Target ABI tag.")
@click.option("--no-pip", is_flag=True, help="Do not cross-check with pip.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_ctx
def check_command(
    obj: Context, house_path: Path, requirements: tuple[str, ...],
    requirement_files: tuple[Path, ...], constraint_files: tuple[Path, ...], pre: bool,
    python_versions: tuple[str, ...], platforms: tuple[str, ...], implementation: str | None,
    abi: str | None, no_pip: bool, as_json: bool,
) -> None:
    """Prove the requirements install from HOUSE alone, for each target.

    Without target options, the targets the house was built for are checked.
    Prints a table (target, OK or what is missing and why) and cross-checks
    with pip's own resolver; exits 1 if any target fails or pip disagrees.
    """
    from wheelhouse.check import check
    from wheelhouse.house import House
    from wheelhouse.targets import Target

    wanted = _wanted(house_path, requirements, requirement_files, constraint_files, pre)
    targets: list[Target | None] = []
    if python_versions or platforms or implementation or abi:
        for version in python_versions or (None,):
            for platform in platforms or (None,):
                targets.append(Target.parse(python_version=version, platform=platform,
                                            implementation=implementation, abi=abi))
    else:
        # The targets the house was built for (this interpreter if it records none):
        # those its files serve, and those its last build was asked for, which
        # may have got no file at all (--allow-missing).
        recorded = sorted({t for e in House.open(house_path).read_manifest().files
                           for t in e.targets} | _reported_targets(house_path))
        targets = [None if name == "host" else Target.from_name(name) for name in recorded]
    result = check(house_path, wanted, targets=targets, requirement_files=requirement_files,
                   constraint_files=constraint_files, requirements=requirements,
                   ask_pip=not no_pip)
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "targets": [t.to_json() for t in result.targets]},
                              indent=2, sort_keys=True))
    else:
        width = max(len(t.label) for t in result.targets)
        for t in result.targets:
            status = "OK" if t.ok else "MISSING"
            detail = f"{len(t.chosen)} distributions" if t.ok else f"{len(t.unmet)} unmet"
            _echo(f"{t.label:<{width}}  {status:<7}  {detail}")
            for u in t.unmet:
                _echo(f"{'':<{width}}    - {u}")
            if t.pip_note:
                _echo(f"{'':<{width}}    note: pip differs: {t.pip_note}")
            if t.pip_skipped:
                _echo(f"{'':<{width}}    note: cross-check with pip skipped ({t.pip_skipped})")
            if t.disagreement:
                _echo(f"{'':<{width}}    ! pip disagrees ({t.disagreement}); "
                      "this is a bug in wheelhouse: please report it")
    if not result.ok:
        raise click.exceptions.Exit(1)


def _reported_targets(house_path: Path) -> set[str]:
    """The targets the house's last build report names (none if it has no report)."""
    from wheelhouse.build import REPORT_NAME

    try:
        report = json.loads((house_path / REPORT_NAME).read_bytes())
        names = [*report.get("targets", {}), *report.get("missing", {})]
    except (OSError, ValueError, AttributeError, TypeError):
        return set()
    return {n for n in names if isinstance(n, str) and n}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 bad input, 2 usage, 3 integrity, ...)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None,
                          prog_name="wheelhouse", standalone_mode=False)
    except WheelhouseError as e:
        _echo(f"error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as e:  # Abort: click's form of Ctrl-C
        if isinstance(e, Terminated) or isinstance(e.__cause__, Terminated):
            # SIGTERM, rolled back as a Ctrl-C is: 128 + 15, as a shell shows it.
            _echo("terminated (SIGTERM)", err=True)
            return 143
        _echo("interrupted", err=True)
        return 130
    except OSError as e:
        # A file-system failure we did not anticipate: still no traceback.
        _echo(f"error: {e}", err=True)
        return 1
    # With standalone_mode=False, click returns the code of a raised Exit.
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    import signal

    try:
        code = main()
    except KeyboardInterrupt:  # in the instant between the command's end and here
        code = 130
    # The command's work is done. A Ctrl-C from here on (while the exit
    # handlers flush logging, or other threads are waited for) ends the process
    # as the default action does: killed by SIGINT, no traceback from a handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _exit(code)


def _exit(code: int) -> None:
    """Exit with *code*, without the interpreter's teardown when nothing else runs.

    Freeing every module and object at exit costs a command 25 ms (a quarter
    of a one-file ``add``). The exit handlers still run (logging's flush,
    coverage's save), then the standard streams are flushed, then the process
    ends. With another thread still running, the normal exit waits for it.
    """
    import threading

    if threading.active_count() > 1:
        sys.exit(code)
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with it closed ('>&-'): nothing to flush
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (wheelhouse ls | head)
            code = code or 1
    os._exit(code)
