"""The ``modelplex`` command line: one module per command group, registered lazily in ``cli.main``.

Owns: nothing at package level (importing ``modelplex.cli`` stays free); ``main`` holds the app and
the registry, ``_common`` the shared options and the error policy, and each other module one group.

Must not touch: library logic; commands call the public library API and format its results.
"""
