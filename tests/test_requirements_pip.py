"""Requirement files read as pip 26.3 reads them: wheelhouse's scan against pip's own parser.

Each case is a small tree of files; pip's ``RequirementsFileParser`` (with a
real PackageFinder, offline) and ``scan_requirement_files`` read the same
files, and every requirement (its text, hashes, and whether it is a
constraint) and every option that changes what is resolved must agree.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from wheelhouse.errors import InvalidInputError
from wheelhouse.requirements import scan_requirement_files
from wheelhouse.upstream import index_urls

H = "sha256:" + "a" * 64


def _pip_read(top: list[str], cons: list[str]) -> dict[str, Any]:
    from pip._internal.commands import create_command
    from pip._internal.models.release_control import ReleaseControl
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import RequirementsFileParser, get_line_parser, handle_line

    cmd = create_command("install")
    options, _ = cmd.parse_args(["--isolated"])
    session = PipSession()
    finder = cmd._build_package_finder(options, session)  # type: ignore[attr-defined]
    line_parser = get_line_parser(finder)
    out: dict[str, Any] = {"reqs": [], "index": [], "trusted": [], "require_hashes": False,
                           "no_require_hashes": False}
    for name, constraint in [(c, True) for c in cons] + [(t, False) for t in top]:
        for parsed in RequirementsFileParser(session, line_parser).parse(name, constraint):
            if parsed.requirement is None:
                o = parsed.opts
                if o.no_index:
                    out["index"].append("--no-index")
                if o.index_url:
                    out["index"] += ["--index-url", o.index_url]
                for url in o.extra_index_urls or []:
                    out["index"] += ["--extra-index-url", url]
                out["trusted"] += list(o.trusted_hosts or [])
                out["require_hashes"] |= bool(o.require_hashes)
                out["no_require_hashes"] |= bool(o.no_require_hashes)
            req = handle_line(parsed, options=options, finder=finder, session=session)
            if req is not None:
                hashes = sorted(f"{a}:{d}" for a, ds in (req.options or {}).get("hashes", {}).items()
                                for d in ds)
                out["reqs"].append((req.requirement, tuple(hashes), req.constraint))
    control = finder.release_control or ReleaseControl()
    out["release"] = (sorted(control.all_releases), sorted(control.only_final))
    out["urls"] = [u if u.endswith("/") else u + "/" for u in finder.index_urls]
    return out


def _our_read(top: list[str], cons: list[str]) -> dict[str, Any]:
    from pip._internal.models.release_control import ReleaseControl

    scan = scan_requirement_files([Path(t) for t in top], constraints=[Path(c) for c in cons])
    control = ReleaseControl()
    for kind, value in scan.release_control:
        if kind == "pre":
            control.all_releases.add(":all:")
        elif kind == "all_releases":
            control.handle_mutual_excludes(value, control.all_releases, control.only_final, kind)
        else:
            control.handle_mutual_excludes(value, control.only_final, control.all_releases, kind)
    # Index URLs are kept as written (a ${TOKEN} stays a variable for the lock);
    # pip's are expanded.
    def expand(value: str) -> str:
        return re.sub(r"\$\{([A-Z0-9_]+)\}",
                      lambda m: os.environ.get(m.group(1)) or m.group(0), value)

    return {"reqs": [(ln.text, tuple(sorted(ln.hashes)), ln.constraint) for ln in scan.lines],
            "index": [expand(w) for w in scan.index_options],
            "trusted": scan.trusted_hosts, "require_hashes": scan.require_hashes,
            "no_require_hashes": scan.no_require_hashes,
            "release": (sorted(control.all_releases), sorted(control.only_final)),
            # The indexes pip ends up with (the build names them in its messages).
            "urls": index_urls([], scan.index_options, isolated=True)}


def _one(text: str | bytes, **kw: Any) -> dict[str, Any]:
    return {"files": {"r.txt": text}, "top": ["r.txt"], **kw}


CASES: dict[str, dict[str, Any]] = {
    "plain": _one(f"foo==1.0 --hash={H}\nbar[x]>=2 ; python_version >= '3.8'\n"),
    "env-in-url": _one("foo @ https://${TOKEN}@git.example/foo-1.0.tar.gz\n",
                       env={"TOKEN": "s3cret"}),
    "env-in-index": _one("--extra-index-url https://${TOKEN}@x.example/simple\n",
                         env={"TOKEN": "s3cret"}),
    "env-unset-stays": _one("foo @ https://${NOT_SET_HERE}@git.example/foo-1.0.tar.gz\n"),
    "env-in-nested-path": {"files": {"r.txt": "-r ${DIR}/other.txt\n", "sub/other.txt": "bar\n"},
                           "top": ["r.txt"], "env": {"DIR": "sub"}},
    "env-in-hash": _one("foo==1 --hash=${H}\n", env={"H": H}),
    "options-after-the-first": _one(
        "--extra-index-url https://x.example/simple --trusted-host x.example\n"
        "--no-index --pre\n--extra-index-url https://y.example/simple "
        "--extra-index-url https://z.example/simple\n"),
    "the-last-index-url-wins": _one("--extra-index-url https://x.example/simple\n"
                                    "--index-url https://a.example/simple\n"
                                    "--extra-index-url https://y.example/simple\n"
                                    "--index-url https://b.example/simple\n"
                                    "--extra-index-url https://z.example/simple\n"),
    "no-index-is-for-good": _one("--extra-index-url https://x.example/simple\n--no-index\n"
                                 "--index-url https://b.example/simple\n"),
    "require-hashes-second": _one(f"--no-index --require-hashes\nfoo==1 --hash={H}\n"),
    "r-inside-a-constraints-file": {
        "files": {"r.txt": "foo\n", "c.txt": "foo<2\n-r more.txt\n", "more.txt": "bar\n"},
        "top": ["r.txt"], "cons": ["c.txt"]},
    "comment-ending-in-backslash": _one("foo  # see C:\\\nbar\nbaz\n"),
    "continuation-joins-with-nothing": _one(
        "https://example.com/pkg/foo-\\\n1.0.tar.gz\nfoo==1.\\\n0 --hash=sha256:"
        + "a" * 32 + "\\\n" + "a" * 32 + "\n--index-url https://i.example/\\\nsimple\n"),
    "utf-16-with-bom": _one(b"\xff\xfe" + "foo==1.0\nbar\n".encode("utf-16-le")),
    "utf-8-with-bom": _one(b"\xef\xbb\xbf" + b"foo==1.0\n"),
    "pep-263-coding-line": _one("# -*- coding: latin-1 -*-\nfoo ; platform_release == 'caf\u00e9'\n"
                                .encode("latin-1")),
    "hash-prefix": _one(f"foo==1.0 --has={H}\n"),
    "nested-file-url": {"files": {"r.txt": "-r file://{D}/other.txt\n", "other.txt": "bar\n"},
                        "top": ["r.txt"]},
    "dotdot-after-a-symlink": {
        "files": {"proj/r.txt": "-r reqs/base.txt\n", "shared/reqs/base.txt": "-r ../common.txt\n",
                  "shared/common.txt": "shared_common\n", "proj/common.txt": "proj_common\n"},
        "symlinks": {"proj/reqs": "shared/reqs"}, "top": ["proj/r.txt"]},
    "release-switch-on-a-requirement-line": _one("foo --all-releases foo\n"),
    "constraints-read-first": {"files": {"r.txt": "--only-final=:all:\nfoo\n", "c.txt": "--pre\n"},
                               "top": ["r.txt"], "cons": ["c.txt"]},
    "a-file-read-twice-applies-twice": {
        "files": {"r.txt": "-r a.txt\n-r b.txt\n-r a.txt\n", "a.txt": "--pre\nfoo\n",
                  "b.txt": "--only-final :all:\n"}, "top": ["r.txt"]},
    "short-options-and-prefixes": _one("-rother.txt\n-ihttps://i.example/simple\n"
                                       "--extra=https://x.example/simple\n--trusted h.example\n",
                                       more={"other.txt": "lib\n"}),
    "pip-26-3-options": _one("--pypi-url https://p.example/simple\n--all-releases lib,other\n"
                             "--only-final other\n--no-require-hashes\nlib\nother\n"),
}


# pip's file: URL adapter leaves the file it read open (pip's, not ours).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("name", list(CASES))
def test_a_requirements_file_is_read_as_pip_reads_it(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    for rel, data in {**case["files"], **case.get("more", {})}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes)
                         else data.replace("{D}", str(tmp_path)).encode())
    for link, target in case.get("symlinks", {}).items():
        (tmp_path / link).symlink_to(tmp_path / target)
    for key, value in case.get("env", {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            theirs = _pip_read(case["top"], case.get("cons", []))
        ours = _our_read(case["top"], case.get("cons", []))
    finally:
        logging.disable(logging.NOTSET)
    assert ours == theirs


def test_what_pip_refuses_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    for text, said in [
        ("foo\n--pre --bogus\n", "requirements.txt:2: no such option: --bogus"),
        ("--index-url\n", "requirements.txt:1: --index-url option requires 1 argument"),
        ("--pre=1\n", "requirements.txt:1: --pre option does not take a value"),
        ("-r requirements.txt\n", "recursively references itself"),
        ("-r https://example.com/r.txt\n", "a requirements file named by URL"),
        ("foo --hash 'sha256:ab\n", "cannot split the options"),
        ("foo -C novalue\n", "Arguments to -C must be of the form KEY=VAL"),
    ]:
        req.write_text(text)
        with pytest.raises(InvalidInputError, match=re.escape(said)):
            scan_requirement_files([req])


def test_a_token_from_the_environment_never_reaches_a_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WH_SECRET_TOKEN", "hunter2")
    req = tmp_path / "requirements.txt"
    req.write_text("--extra-index-url https://u:${WH_SECRET_TOKEN}@x.example/simple --bogus\n")
    with pytest.raises(InvalidInputError) as info:
        scan_requirement_files([req])
    assert "hunter2" not in str(info.value) and "${WH_SECRET_TOKEN}" in str(info.value)
    req.write_text("--extra-index-url https://u:${WH_SECRET_TOKEN}@x.example/simple\nfoo\n")
    scan = scan_requirement_files([req])
    assert scan.index_options == ["--extra-index-url",
                                  "https://u:${WH_SECRET_TOKEN}@x.example/simple"]


def test_a_variable_in_a_requirement_changes_the_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A warm build must not reuse a resolution of other versions.
    req = tmp_path / "requirements.txt"
    req.write_text("foo==${FOO_VERSION}\n")
    monkeypatch.setenv("FOO_VERSION", "1.0")
    first = scan_requirement_files([req])
    assert first.requirements == ["foo==1.0"]
    monkeypatch.setenv("FOO_VERSION", "2.0")
    assert scan_requirement_files([req]).digest() != first.digest()
    monkeypatch.setenv("FOO_VERSION", "1.0")
    assert scan_requirement_files([req]).digest() == first.digest()


def test_options_are_split_as_shlex_splits_them() -> None:
    # The quick split (nothing quoted) must give what shlex gives, always.
    import random
    import shlex

    from wheelhouse.requirements import _split_options

    rng = random.Random(7)
    alphabet = ["a", "-", "=", ":", " ", "  ", "\t", "\r", "\n", "\xa0", "\x0b", "#", "'",
                '"', "\\", "$", "{", "}"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        try:
            expected = shlex.split(text)
        except ValueError:
            with pytest.raises(ValueError):
                _split_options(text)
            continue
        assert _split_options(text) == expected, repr(text)


def test_a_token_in_a_requirement_or_nested_url_never_reaches_a_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.builders import build_wheel
    from tests.conftest import isolated_env, wheelhouse

    env = isolated_env({"WH_SECRET_TOKEN": "hunter2",
                        "WHEELHOUSE_STORE": str(tmp_path / "store")})
    house = tmp_path / "house"
    wheelhouse("add", str(build_wheel(tmp_path / "d", "demo", "1.0")), "-o", str(house), env=env)
    req = tmp_path / "requirements.txt"
    for text in ("demo @ https://${WH_SECRET_TOKEN}@pkgs.example/demo-1.0-py3-none-any.whl\n",
                 "-r https://__token__:${WH_SECRET_TOKEN}@pkgs.example/r.txt\n",
                 "-r http://[oops:${WH_SECRET_TOKEN}/r.txt\n"):
        req.write_text(text)
        for command in ("install", "check"):
            args = ["--target", str(tmp_path / "t"), "--dry-run"] if command == "install" else []
            out = wheelhouse(command, str(house), "-r", str(req), *args, env=env, check=False)
            assert out.returncode == 1, out.stderr
            assert "hunter2" not in out.stderr + out.stdout
            assert "Traceback" not in out.stderr
    # An index the build cannot reach is named without its token.
    req.write_text("--index-url https://${WH_SECRET_TOKEN}@127.0.0.1:9/simple\ndemo\n")
    out = wheelhouse("build", "-r", str(req), "-o", str(tmp_path / "built"),
                     env={**env, "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}, check=False)
    assert out.returncode != 0
    assert "hunter2" not in out.stderr + out.stdout and "127.0.0.1:9" in out.stderr
