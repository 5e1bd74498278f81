"""The one entry point for building, testing, linting and benchmarking slither.

    nox -s tests               build the extension, cargo test, pytest on every CPython found (3.11, 3.12, 3.13)
    nox -s tests-3.12          the same on one of them
    nox -s tests_core-3.13     only the pool, faults, dispatch and store tests (CI, on 3.12 and 3.13)
    nox -s tests_freethreaded  the pytest suite on a free-threaded CPython 3.13t (built by tools/freethreaded-python.sh)
    nox -s demos_freethreaded  each demo on the free-threaded interpreter
    nox -s ray                 the shared behaviour tests on both backends, with a local Ray
    nox -s typing              mypy --strict and pyright --strict on tests/typing (a user's script, expected mistakes)
    nox -s lint                rustfmt, clippy -D warnings, ruff, stubtest of _slither.pyi
    nox -s wheels              manylinux wheels for every CPython found, each installed and run in a fresh venv
    nox -s wheels -- 3.12      the same for some of them (CI builds one)
    nox -s bench               benchmarks against the peers; writes docs/benchmarks.md

Interpreters are looked up on PATH and in pyenv's versions directory ($PYENV_ROOT, default ~/.pyenv), so
a pyenv machine needs no `pyenv global`; the free-threaded one comes from tools/freethreaded-python.sh
(or $SLITHER_FT_PYTHON).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nox

ROOT = Path(__file__).parent
FT_SCRIPT = ROOT / "tools" / "freethreaded-python.sh"
SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]
TESTED = ["3.11", "3.12", "3.13"]
# What CI runs on the other interpreters when the whole suite on each would not fit its time budget.
CORE_TESTS = ["tests/test_pool.py", "tests/test_core.py", "tests/test_faults.py", "tests/test_dispatch.py",
              "tests/test_store.py"]
TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "psutil>=5.9", "cloudpickle>=2.0", "maturin>=1.7,<2"]
# Newer Hypothesis releases need a compiled extension that cannot be built for 3.13t.
FT_TEST_DEPS = [d if not d.startswith("hypothesis") else "hypothesis>=6.100,<6.150" for d in TEST_DEPS]
EXAMPLE_DEPS = ["scikit-learn>=1.3", "Pillow>=10.0"]
ARRAY_DEPS = ["numpy>=1.26", "scikit-learn>=1.3", "pandas>=2.2"]
NOTEBOOK_DEPS = ["nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29", "matplotlib>=3.8", "tqdm", "ipywidgets>=8"]
TYPING_DEPS = ["mypy>=1.11", "pyright>=1.1.380"]
WHEEL_DEPS = ["maturin>=1.7,<2", "ziglang>=0.13", "auditwheel>=6.0"]

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _pyenv_interpreters() -> dict[str, str]:
    """{"3.12": "/root/.pyenv/versions/3.12.1/bin/python3.12", ...}: the newest patch release of each."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found: dict[str, tuple[tuple[int, ...], str]] = {}
    for exe in glob.glob(str(root / "versions" / "3.*" / "bin" / "python3.*")):
        name = Path(exe).name.removeprefix("python")
        patch = Path(exe).parent.parent.name
        if not name.replace(".", "").isdigit() or not patch.replace(".", "").isdigit():
            continue  # python3.12-config, free-threaded "t" builds, pypy...
        key = tuple(int(p) for p in patch.split("."))
        if name not in found or key > found[name][0]:
            found[name] = (key, exe)
    return {v: exe for v, (_k, exe) in found.items()}


def _find_python(version: str) -> str | None:
    """The pythonX.Y nox would use: on PATH (when it really runs that version), else pyenv's."""
    on_path = shutil.which(f"python{version}")
    if on_path:
        probe = subprocess.run([on_path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return on_path
    return _pyenv_interpreters().get(version)


def _put_interpreters_on_path() -> None:
    """nox looks interpreters up by name (python3.12): put pyenv's real binaries first on PATH, ahead of
    pyenv's shims, which refuse a version that is not selected."""
    dirs = [str(Path(exe).parent) for exe in _pyenv_interpreters().values()]
    if dirs:
        os.environ["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])


_put_interpreters_on_path()


def _develop(session: nox.Session) -> None:
    session.run("maturin", "develop", "--quiet", external=False)


@nox.session(python=TESTED)
def tests(session: nox.Session) -> None:
    """Build the extension, run the core crate's tests (once, on the first version), then pytest."""
    session.install(*TEST_DEPS, *EXAMPLE_DEPS, *ARRAY_DEPS, *NOTEBOOK_DEPS, "joblib")
    _develop(session)
    if session.python == TESTED[0] and not os.environ.get("SLITHER_SKIP_CARGO_TEST"):
        session.run("cargo", "test", "-p", "slither-core", "--quiet", external=True)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=TESTED)
def tests_core(session: nox.Session) -> None:
    """Only the core behaviour (pool, faults, dispatch, store): what CI runs on 3.12 and 3.13."""
    session.install(*TEST_DEPS)
    _develop(session)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or CORE_TESTS))


def _freethreaded_python(session: nox.Session) -> str | None:
    explicit = os.environ.get("SLITHER_FT_PYTHON")
    if explicit:
        return explicit
    proc = subprocess.run(["bash", str(FT_SCRIPT)], capture_output=True, text=True)
    if proc.returncode == 3:
        session.log("a free-threaded CPython could not be had on this machine (exit status 3):\n" + proc.stderr[-2000:])
        return None
    if proc.returncode != 0:
        session.error(f"building the free-threaded interpreter failed:\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


def _freethreaded_venv(session: nox.Session) -> tuple[str, dict[str, str]]:
    """A venv on the free-threaded interpreter with the test dependencies and the extension built for it."""
    py = _freethreaded_python(session)
    if py is None:
        session.skip("SKIPPED the free-threaded leg: no free-threaded interpreter could be had here")
    venv = ROOT / ".nox" / "ft-venv"
    if not (venv / "bin" / "python").exists():
        session.run(py, "-m", "venv", str(venv), external=True)
    vpy = str(venv / "bin" / "python")
    session.run(vpy, "-m", "pip", "install", "-q", *FT_TEST_DEPS, external=True)
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    # The array tests (shared-memory buffers, preload) want numpy, scikit-learn and pandas; wheels only, and
    # their tests skip with a message where this interpreter has none.
    arrays = subprocess.run([vpy, "-m", "pip", "install", "-q", "--only-binary=:all:", *ARRAY_DEPS])
    if arrays.returncode != 0:
        session.warn(f"no wheels of {ARRAY_DEPS} for this interpreter: their tests are skipped on this leg")
    session.run(str(venv / "bin" / "maturin"), "develop", "--quiet", env=env, external=True)
    session.run(vpy, "-c", "import sys, slither._slither; assert not sys._is_gil_enabled(), 'GIL re-enabled'",
                env=env, external=True)
    return vpy, env


@nox.session(venv_backend="none")
def tests_freethreaded(session: nox.Session) -> None:
    """The pytest suite on a free-threaded CPython 3.13t, with the extension built for it."""
    vpy, env = _freethreaded_venv(session)
    session.run(vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs, env=env, external=True)


@nox.session(venv_backend="none")
def demos_freethreaded(session: nox.Session) -> None:
    """Every demo at --size small on the free-threaded CPython, GIL off, baselines in that interpreter.

    slither's invariants all hold; the unsafe text_analysis and batch_stats baselines break an invariant in
    at least one of 5 runs (tests/test_examples_freethreaded.py).
    """
    vpy, env = _freethreaded_venv(session)
    optional = subprocess.run([vpy, "-m", "pip", "install", "-q", "--only-binary=:all:", "scikit-learn>=1.3",
                               "Pillow>=10.0"])
    if optional.returncode != 0:
        session.warn("scikit-learn or Pillow has no wheel for this interpreter: ml_scoring and image_pipeline "
                     "are skipped on this leg")
    env = {**env, "SLITHER_DEMOS_FT": "1"}
    session.run(vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsx", "tests/test_examples_freethreaded.py",
                *session.posargs, env=env, external=True)


@nox.session(python="3.11")
def ray(session: nox.Session) -> None:
    """The behaviour shared by both backends, against a local Ray limited to this machine's cores."""
    session.install(*TEST_DEPS, "ray>=2.9")
    _develop(session)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_backends.py", *session.posargs)


@nox.session(python="3.12")
def typing(session: nox.Session) -> None:
    """A user's script passes mypy --strict and pyright --strict, and the mistakes in
    tests/typing/expected_errors.py are reported by both (each is marked with the error it must raise;
    an error that is no longer reported is an unused ignore, which fails the check)."""
    session.install(*TYPING_DEPS, "maturin>=1.7,<2", "cloudpickle>=2.0")
    _develop(session)
    session.run("python", "-m", "mypy", "--strict", "tests/typing")
    session.run("pyright", "--pythonpath", str(Path(session.virtualenv.location) / "bin" / "python"), "tests/typing")


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    """rustfmt, clippy with warnings as errors, ruff, and the native module's stub against the binary."""
    session.install("ruff", "mypy>=1.11", "maturin>=1.7,<2", "cloudpickle>=2.0")
    session.run("cargo", "fmt", "--all", "--", "--check", external=True)
    session.run("cargo", "clippy", "--workspace", "--all-targets", "--", "-D", "warnings", external=True)
    session.run("ruff", "check", "python", "tests", "bench", "noxfile.py")
    _develop(session)
    session.run("python", "-m", "mypy.stubtest", "slither._slither")


def _wheel_targets(session: nox.Session) -> list[tuple[str, str]]:
    """(label, interpreter) for every CPython this machine can have, or those named in posargs."""
    wanted = session.posargs or [*SUPPORTED, "3.13t"]
    targets = []
    for label in wanted:
        if label.endswith("t"):
            py = os.environ.get("SLITHER_FT_PYTHON") or _freethreaded_python(session)
        else:
            py = _find_python(label)
        if py is None:
            session.log(f"wheels: no CPython {label} here, skipping it")
            continue
        targets.append((label, py))
    if not targets:
        session.error(f"wheels: none of {wanted} could be found")
    return targets


def _toolchain_free_path() -> str:
    """PATH without any directory holding cargo or rustc: the user who installs a wheel has no Rust."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, tool)) for tool in ("cargo", "rustc"))]
    return os.pathsep.join(keep)


@nox.session(python="3.12")
def wheels(session: nox.Session) -> None:
    """Release wheels, manylinux2014 (glibc 2.17) through zig, one per interpreter; each installed into a
    fresh venv with no Rust on PATH, where `python -m slither.example text_analysis --size small` must run.

    `nox -s wheels` covers every CPython found (3.10-3.13 and 3.13t); `nox -s wheels -- 3.12` one of them.
    Wheels land in dist/.
    """
    session.install(*WHEEL_DEPS)
    dist = ROOT / "dist"
    dist.mkdir(exist_ok=True)
    targets = _wheel_targets(session)
    report = []
    for label, py in targets:
        started = time.monotonic()
        before = set(dist.glob("*.whl"))
        session.run("maturin", "build", "--release", "--zig", "--compatibility", "manylinux2014",
                    "--interpreter", py, "--out", str(dist))
        built = sorted(set(dist.glob("*.whl")) - before) or _newest_wheel_for(dist, py)
        wheel = built[-1]
        session.run("auditwheel", "show", str(wheel))
        build_s = time.monotonic() - started
        started = time.monotonic()
        _smoke_test(session, py, wheel)
        report.append(f"{label:6} {wheel.name}  build {build_s:.0f} s, install and demo {time.monotonic() - started:.0f} s")
    session.log("wheels built and smoke-tested:\n  " + "\n  ".join(report))


def _newest_wheel_for(dist: Path, py: str) -> list[Path]:
    """The wheel maturin rewrote in place (same name as an earlier build) for interpreter ``py``."""
    tag = subprocess.run([py, "-c", "import sys, sysconfig; t = 't' if sysconfig.get_config_var('Py_GIL_DISABLED') "
                          "else ''; print(f'cp{sys.version_info[0]}{sys.version_info[1]}{t}')"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return sorted(dist.glob(f"*-{tag}-{tag}-*.whl"), key=lambda p: p.stat().st_mtime)


def _smoke_test(session: nox.Session, py: str, wheel: Path) -> None:
    venv = ROOT / ".nox" / "wheel-smoke" / wheel.name.split("-")[2]
    if venv.exists():
        shutil.rmtree(venv)
    session.run(py, "-m", "venv", str(venv), external=True)
    vpy = str(venv / "bin" / "python")
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{_toolchain_free_path()}", "VIRTUAL_ENV": str(venv),
           "CARGO_HOME": "/nonexistent", "RUSTUP_HOME": "/nonexistent"}
    session.run(vpy, "-c", "import shutil, sys; sys.exit(shutil.which('cargo') or shutil.which('rustc'))",
                env=env, external=True)
    # --only-binary: pip must take the wheel as it is, never fall back to building anything from source.
    session.run(vpy, "-m", "pip", "install", "-q", "--only-binary", ":all:", str(wheel), env=env, external=True)
    # Run from outside the checkout, so that the installed package (not ./python) is imported.
    with session.chdir(venv):
        session.run(vpy, "-c", "import slither, slither._slither as n; print('slither', slither.__version__, n.__file__)",
                    env=env, external=True)
        session.run(vpy, "-m", "slither.example", "text_analysis", "--size", "small", env=env, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against serial, threads, multiprocessing, ProcessPoolExecutor, loky, mpire, Pebble."""
    session.install("maturin>=1.7,<2", "cloudpickle>=2.0", "psutil>=5.9", "loky", "mpire", "Pebble", "ray>=2.9")
    session.run("maturin", "develop", "--release", "--quiet")
    session.run("python", "bench/run.py", *session.posargs)


if __name__ == "__main__":
    sys.exit("run this with nox: pip install nox && nox -s tests")
