"""The rooms are top-level folders (agent/, server/, …) installed as one namespace: vigil.agent, vigil.server, …

Everything else about the package is in pyproject.toml; this only maps folders to package names,
which pyproject's static tables cannot do for a whole tree, and builds the two C extensions: the
common case of `sender data` (server/ingest/_sender.c) and the COPY encoding of numeric history
(server/store/_copy.c). They are optional: without a C compiler the install goes on, and the server
does the same in Python (vigil.server.ingest.values, vigil.server.store.postgres).
"""

from setuptools import Extension, find_packages, setup

ROOMS = ("agent", "server", "proxy", "alerts", "web", "run")

setup(
    packages=[f"vigil.{p}" for p in find_packages(include=[f"{r}" for r in ROOMS] + [f"{r}.*" for r in ROOMS])],
    package_dir={f"vigil.{r}": r for r in ROOMS},
    ext_modules=[Extension(name, [source], optional=True, extra_compile_args=["-O2"])
                 for name, source in (("vigil.server.ingest._sender", "server/ingest/_sender.c"),
                                      ("vigil.server.store._copy", "server/store/_copy.c"))],
)
