"""numba compilation with an on-disk cache that knows every source a kernel compiles in.

Compiling a kernel takes seconds (the training kernel 10-20 s), loading it from numba's cache well under one.
numba keys its cache on the content of the one file a function is defined in; a kernel that compiles in code
or constants of other modules would reuse stale machine code after an edit of those. :func:`cached_njit`
keys the cache of a module's functions on all the files the module registers, and on this one (which sets
LLVM's code-generation options).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import llvmlite.binding as llvm
from numba import njit
from numba.core import caching

CACHE_ENV = "ROBUSTREC_JIT_CACHE"  # optional directory for the compiled kernels (default: __pycache__)
FILLING_ENV = "ROBUSTREC_JIT_FILLING"  # set in the child process that fills the cache
_SOURCES: dict[Path, tuple[Path, ...]] = {}  # module file -> the files its kernels compile in (itself first)

# LLVM's x86 back end turns a conditional move that waits on a load inside a loop back into a branch, betting
# that the branch predicts well; in the kernels' binary searches it does not (half the steps mispredict).
# Set once per process (LLVM refuses an option given twice), before anything compiles.
llvm.set_option("robustrec", "--x86-cmov-converter=false")


def register_sources(module_file: str, *compiled_in: str) -> None:
    """Key the cache of ``module_file``'s kernels on its content and that of ``compiled_in``."""
    path = Path(module_file).resolve()
    _SOURCES[path] = (path, *(Path(p).resolve() for p in compiled_in))


def cached_njit(*args, refcounted: bool = True, **options):
    """``numba.njit`` with the on-disk cache on (for a module that called :func:`register_sources`); without it
    where this numba has no locator registry to extend (compiled in every process then, never stale).

    ``refcounted=False`` compiles without numba's reference counting of arrays (its runtime, NRT): numba counts a
    reference each time an array is bound to a name, also in inlined helpers, with an atomic add and subtract on
    the array's counter; in a hot loop that passes arrays to helpers they are most of the loop's calls, and the
    threads sharing an array take its counter's cache line from each other. Such a function may index, slice and
    pass arrays, never allocate one (numba then refuses to compile it); its callers keep the arrays alive.
    """
    if not refcounted:
        options["_nrt"] = False  # numba's option (private name) for nopython code without its runtime
    return njit(*args, cache=_CACHE_KEYED_ON_SOURCES, **options)


_CACHE_KEYED_ON_SOURCES = all(hasattr(caching, name) for name in (
    "CacheImpl", "InTreeCacheLocator", "UserWideCacheLocator", "UserProvidedCacheLocator"))


class _SourcesStamp:
    """Cache locator mixin for registered modules: the stamp hashes every registered source."""

    def get_source_stamp(self):
        sources = (*_SOURCES[Path(self._py_file).resolve()], Path(__file__))  # this file: the code-generation options
        return hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve() not in _SOURCES:
            return None
        return super().from_function(py_func, py_file)


if _CACHE_KEYED_ON_SOURCES:  # numba 0.68's locator registry (else: no on-disk cache, see cached_njit)
    class _EnvironmentLocator(_SourcesStamp, caching.UserProvidedCacheLocator):
        """The directory in $ROBUSTREC_JIT_CACHE when set (e.g. a fresh one, to time a cold compile)."""

        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            self._cache_path = str(Path(os.environ[CACHE_ENV]) / self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.environ.get(CACHE_ENV) or Path(py_file).resolve() not in _SOURCES:
                return None
            locator = cls(py_func, py_file)  # (numba's own from_function wants numba's NUMBA_CACHE_DIR instead)
            locator.ensure_cache_path()
            return locator

    class _InTreeLocator(_SourcesStamp, caching.InTreeCacheLocator):
        """__pycache__ beside the module (numba's default place)."""

    class _UserWideLocator(_SourcesStamp, caching.UserWideCacheLocator):
        """The user's cache directory, where the package directory is read-only."""

    if _InTreeLocator not in caching.CacheImpl._locator_classes:  # noqa: SLF001 (numba's locator registry)
        caching.CacheImpl._locator_classes[:0] = [_EnvironmentLocator, _InTreeLocator, _UserWideLocator]  # noqa: SLF001


def cache_is_cold(dispatcher) -> bool:
    """Whether ``dispatcher`` (a ``cached_njit`` function) has an on-disk cache that holds no build of its current
    sources yet. False where it has no on-disk cache at all (nothing a child process could fill) and once this
    process holds a build (loaded or compiled: the cache is not read again)."""
    cache = getattr(dispatcher, "_cache", None)
    if dispatcher.overloads or not isinstance(cache, caching.FunctionCache):
        return False
    try:
        return not cache._cache_file._load_index()  # noqa: SLF001 (empty when missing or of other sources)
    except OSError:
        return False


def fill_cache_in_child(statement: str) -> None:
    """Run ``statement`` (Python code that compiles the kernels) in a child process, which writes numba's cache,
    so that this process loads the cached build instead of compiling its own.

    Why: the build numba keeps in memory after compiling can differ in the last bits from the same build loaded
    from the cache (fast-math reassociation lets the compiler order a sum differently), so a process that compiled
    would not reproduce, bit for bit, the later processes that load. The child imports from this process's
    ``sys.path`` (also what a script or notebook put there), so it compiles the very modules this one runs. A
    failing child is ignored: this process then compiles as usual."""
    if os.environ.get(FILLING_ENV):
        return
    import_path = os.pathsep.join(path or os.getcwd() for path in sys.path)  # ("" is the working directory)
    subprocess.run([sys.executable, "-P", "-c", statement], env={**os.environ, FILLING_ENV: "1",
                                                                 "PYTHONPATH": import_path},
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def numba_thread_count(n: int) -> int:
    """How many threads numba's parallel loops run on when ``n`` are asked for: at least 1, at most its pool size."""
    import numba

    return max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))


@contextmanager
def numba_threads(n: int):
    """Run numba's parallel loops on ``n`` threads (at most numba's pool size) inside the block.

    torch's intra-op thread count is restored too: numba's OpenMP layer and torch can share one OpenMP runtime,
    whose thread count numba's parallel loops would otherwise leave at numba's pool size."""
    import numba
    import torch

    previous_torch = torch.get_num_threads()  # before numba's first call, which may start its pool and reset it
    previous = numba.get_num_threads()
    numba.set_num_threads(numba_thread_count(n))
    try:
        yield
    finally:
        numba.set_num_threads(previous)
        if torch.get_num_threads() != previous_torch:
            torch.set_num_threads(previous_torch)
