from __future__ import annotations

import pytest

from wheelhouse.errors import InvalidFilenameError
from wheelhouse.filenames import is_safe_component, parse_filename, validate_component


@pytest.mark.parametrize(
    ("filename", "kind", "name", "version", "tags"),
    [
        pytest.param("six-1.16.0-py2.py3-none-any.whl", "wheel", "six", "1.16.0",
                     ("py2-none-any", "py3-none-any"), id="universal"),
        pytest.param(
            "numpy-2.1.3-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
            "wheel", "numpy", "2.1.3",
            ("cp312-cp312-manylinux2014_aarch64", "cp312-cp312-manylinux_2_17_aarch64"),
            id="numpy-compressed-tags",
        ),
        pytest.param("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "wheel",
                     "torch", "2.13.0+cpu", ("cp311-cp311-manylinux_2_28_x86_64",),
                     id="local-version"),
        pytest.param("Django-5.1-py3-none-any.whl", "wheel", "django", "5.1",
                     ("py3-none-any",), id="capitalised"),
        pytest.param("zope.interface-7.1.1-cp312-cp312-win_amd64.whl", "wheel",
                     "zope-interface", "7.1.1", ("cp312-cp312-win_amd64",), id="dotted-name"),
        pytest.param("demo-1.0-1-py3-none-any.whl", "wheel", "demo", "1.0",
                     ("py3-none-any",), id="build-tag"),
        pytest.param("pydantic_core-2.23.4.tar.gz", "sdist", "pydantic-core", "2.23.4", (),
                     id="sdist-targz"),
        pytest.param("demo-1!2.0.zip", "sdist", "demo", "1!2.0", (), id="sdist-zip-epoch"),
    ],
)
def test_parses_real_filenames(
    filename: str, kind: str, name: str, version: str, tags: tuple[str, ...]
) -> None:
    parsed = parse_filename(filename)
    assert (parsed.kind, parsed.name, str(parsed.version), parsed.tag_strings) == (
        kind, name, version, tags
    )
    assert parsed.filename == filename


def test_build_tag_is_kept() -> None:
    assert parse_filename("demo-1.0-1abc-py3-none-any.whl").build == (1, "abc")


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        pytest.param("../demo-1.0-py3-none-any.whl", "path separator", id="dotdot-slash"),
        pytest.param("/etc/demo-1.0-py3-none-any.whl", "path separator", id="absolute"),
        pytest.param("demo-1.0-1/x-py3-none-any.whl", "path separator", id="slash-in-build-tag"),
        pytest.param("demo-1.0-py3-none-any.whl\\..", "path separator", id="backslash"),
        pytest.param("demo-1.0..-py3-none-any.whl", "'..'", id="dotdot"),
        pytest.param("..", "'..'", id="just-dotdot"),
        pytest.param("demo-1.0-py3-none-any.whl\x00.txt", "NUL", id="nul"),
        pytest.param("demo-1.0-py3-none-any\n.whl", "control character", id="newline"),
        pytest.param("demo\x1b[31m-1.0-py3-none-any.whl", "control character", id="escape"),
        pytest.param('de"mo-1.0-py3-none-any.whl', "characters outside", id="quote"),
        pytest.param("dé-1.0-py3-none-any.whl", "characters outside", id="unicode"),
        pytest.param("<b>-1.0-py3-none-any.whl", "characters outside", id="html"),
        pytest.param(".hidden-1.0-py3-none-any.whl", "characters outside", id="leading-dot"),
        pytest.param("", "empty", id="empty"),
        pytest.param("demo.whl", "wrong number of parts", id="too-few-parts"),
        pytest.param("demo-notaversion-py3-none-any.whl", "nvalid", id="bad-version"),
        pytest.param("demo-1.0.tar.bz2", "not a wheel", id="unknown-suffix"),
        pytest.param("demo-1.0.exe", "not a wheel", id="exe"),
        pytest.param("x" * 300 + "-1.0.tar.gz", "longer than", id="too-long"),
    ],
)
def test_rejects_unsafe_or_malformed_names(filename: str, reason: str) -> None:
    with pytest.raises(InvalidFilenameError) as info:
        parse_filename(filename)
    assert reason in str(info.value)
    assert info.value.filename == filename


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("demo-1.0.tar.gz", True),
        ("demo-1.0-py3-none-any.whl.metadata", True),
        ("a", True),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a\\b", False),
        ("", False),
        ("a b", False),
    ],
)
def test_safe_component(name: str, safe: bool) -> None:
    assert is_safe_component(name) is safe
    if safe:
        assert validate_component(name) == name
    else:
        with pytest.raises(InvalidFilenameError):
            validate_component(name)
