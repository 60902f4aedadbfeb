"""The public API is ``pydds.__all__``: every name there exists, every public name is there."""

import subprocess
import sys

import pydds


def test_all_names_exist() -> None:
    for name in pydds.__all__:
        assert hasattr(pydds, name), name


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, obj in vars(pydds).items()
        if not name.startswith("_") and not isinstance(obj, type(pydds))
    }
    assert public <= set(pydds.__all__), public - set(pydds.__all__)


def test_errors_resemble_builtins() -> None:
    assert issubclass(pydds.KeyNotFound, KeyError)
    assert issubclass(pydds.InvalidValue, ValueError)
    assert issubclass(pydds.InvalidName, pydds.InvalidValue)
    assert issubclass(pydds.InvalidUpdate, ValueError)
    assert issubclass(pydds.WrongType, TypeError)
    assert issubclass(pydds.PathNotFound, LookupError)
    assert issubclass(pydds.NodeClosed, RuntimeError)
    for name in pydds.__all__:
        obj = getattr(pydds, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, pydds.PyddsError), name


def test_typed_package() -> None:
    from importlib.resources import files

    assert files("pydds").joinpath("py.typed").is_file()


def test_every_public_name_is_found_where_it_is_defined() -> None:
    lazy = pydds._WHERE  # type: ignore[attr-defined]
    assert set(lazy) == set(pydds.__all__) - {"__version__"}
    for name, where in lazy.items():
        assert getattr(pydds, name).__module__.startswith("pydds"), name
        assert where.startswith(".")


def test_importing_pydds_imports_no_node() -> None:
    # The pydds command imports the package: what a node needs comes on first use.
    probe = "import sys, pydds, pydds.cli; print(sorted(m for m in sys.modules if m in HEAVY))"
    heavy = "HEAVY = {'aiohttp', 'pycrdt', 'msgpack', 'pydds.node', 'pydds.net.peers'}; "
    out = subprocess.run(
        [sys.executable, "-c", heavy + probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
