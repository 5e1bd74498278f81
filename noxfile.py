"""The one entry point for building, testing, linting and benchmarking slither.

    nox -s tests               build the extension, cargo test, pytest (the README's test command)
    nox -s tests_freethreaded  the same pytest suite on a free-threaded CPython (skipped, with a message, if none can be had)
    nox -s ray                 the shared behaviour tests on both backends, with a local Ray
    nox -s lint                rustfmt, clippy -D warnings, ruff
    nox -s bench               benchmarks against the peers; writes docs/benchmarks.md
    nox -s demos_freethreaded  every demo at --size small on a free-threaded CPython, GIL off
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).parent
FT_SCRIPT = ROOT.parent / "shared" / "tools" / "freethreaded-python.sh"
TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "psutil>=5.9", "cloudpickle>=2.0", "maturin>=1.7,<2"]
# Newer Hypothesis releases need a compiled extension that cannot be built for 3.13t.
FT_TEST_DEPS = [d if not d.startswith("hypothesis") else "hypothesis>=6.100,<6.150" for d in TEST_DEPS]
EXAMPLE_DEPS = ["scikit-learn>=1.3", "Pillow>=10.0"]
NOTEBOOK_DEPS = ["nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29", "matplotlib>=3.8", "tqdm"]

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _develop(session: nox.Session) -> None:
    session.run("maturin", "develop", "--quiet", external=False)


@nox.session
def tests(session: nox.Session) -> None:
    """Build the extension, run the core crate's tests, then pytest."""
    session.install(*TEST_DEPS, *EXAMPLE_DEPS, *NOTEBOOK_DEPS)
    _develop(session)
    session.run("cargo", "test", "-p", "slither-core", "--quiet", external=True)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


def _freethreaded_python(session: nox.Session) -> str | None:
    explicit = os.environ.get("SLITHER_FT_PYTHON")
    if explicit:
        return explicit
    if not FT_SCRIPT.exists():
        session.log(f"no {FT_SCRIPT}: cannot build a free-threaded interpreter")
        return None
    proc = subprocess.run(["bash", str(FT_SCRIPT)], capture_output=True, text=True)
    if proc.returncode == 3:
        session.log("a free-threaded CPython could not be had on this machine (exit status 3):\n" + proc.stderr[-2000:])
        return None
    if proc.returncode != 0:
        session.error(f"building the free-threaded interpreter failed:\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


@nox.session(venv_backend="none")
def tests_freethreaded(session: nox.Session) -> None:
    """The pytest suite on a free-threaded CPython 3.13t, with the extension built for it."""
    py = _freethreaded_python(session)
    if py is None:
        session.skip("SKIPPED the free-threaded leg: no free-threaded interpreter could be had here")
    venv = ROOT / ".nox" / "ft-venv"
    if not (venv / "bin" / "python").exists():
        session.run(py, "-m", "venv", str(venv), external=True)
    vpy = str(venv / "bin" / "python")
    session.run(vpy, "-m", "pip", "install", "-q", *FT_TEST_DEPS, external=True)
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    session.run(str(venv / "bin" / "maturin"), "develop", "--quiet", env=env, external=True)
    session.run(vpy, "-c", "import sys, slither._slither; assert not sys._is_gil_enabled(), 'GIL re-enabled'",
                env=env, external=True)
    session.run(vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs, env=env, external=True)


@nox.session
def ray(session: nox.Session) -> None:
    """The behaviour shared by both backends, against a local Ray limited to this machine's cores."""
    session.install(*TEST_DEPS, "ray>=2.9")
    _develop(session)
    session.run("python", "-m", "pytest", "-q", "tests/test_backends.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """rustfmt, clippy with warnings as errors, ruff."""
    session.install("ruff")
    session.run("cargo", "fmt", "--all", "--", "--check", external=True)
    session.run("cargo", "clippy", "--workspace", "--all-targets", "--", "-D", "warnings", external=True)
    session.run("ruff", "check", "python", "tests", "bench", "noxfile.py")


@nox.session(venv_backend="none")
def demos_freethreaded(session: nox.Session) -> None:
    """Every demo at --size small on a free-threaded CPython, GIL off, baselines in that interpreter.

    slither's invariants all hold; the unsafe text_analysis and batch_stats baselines break an invariant in
    at least one of 5 runs (tests/test_examples_freethreaded.py). Self-contained: its own venv.
    """
    py = os.environ.get("SLITHER_FT_PYTHON")
    if not py:
        script = ROOT.parent / "shared" / "tools" / "freethreaded-python.sh"
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True) if script.exists() else None
        if proc is None or proc.returncode != 0 or not proc.stdout.strip():
            session.skip("SKIPPED the free-threaded demo leg: no free-threaded interpreter could be had here")
        py = proc.stdout.strip().splitlines()[-1]
    venv = ROOT / ".nox" / "demos-ft-venv"
    if not (venv / "bin" / "python").exists():
        session.run(py, "-m", "venv", str(venv), external=True)
    vpy = str(venv / "bin" / "python")
    session.run(vpy, "-m", "pip", "install", "-q", "pytest>=8", "pytest-timeout>=2.3", "psutil>=5.9",
                "cloudpickle>=2.0", "maturin>=1.7,<2", external=True)
    optional = subprocess.run([vpy, "-m", "pip", "install", "-q", "--only-binary=:all:", "scikit-learn>=1.3",
                               "Pillow>=10.0"])
    if optional.returncode != 0:
        session.warn("scikit-learn or Pillow has no wheel for this interpreter: ml_scoring and image_pipeline "
                     "are skipped on this leg")
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "SLITHER_DEMOS_FT": "1"}
    session.run(str(venv / "bin" / "maturin"), "develop", "--quiet", env=env, external=True)
    session.run(vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsx", "tests/test_examples_freethreaded.py",
                *session.posargs, env=env, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against serial, threads, multiprocessing, ProcessPoolExecutor, loky, mpire, Pebble."""
    session.install("maturin>=1.7,<2", "cloudpickle>=2.0", "psutil>=5.9", "loky", "mpire", "Pebble", "ray>=2.9")
    session.run("maturin", "develop", "--release", "--quiet")
    session.run("python", "bench/run.py", *session.posargs)
