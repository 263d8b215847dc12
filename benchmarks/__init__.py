"""The benchmark harness behind ``make bench`` (``benchmarks/run.py``).

Owns: nothing at import time. Every module here imports only the standard library at the top, so
that worker processes can run under another interpreter (the one LiteLLM is installed in) that
does not have modelplex; modelplex, aiohttp and friends are imported inside the functions that
need them.

Must not touch: the product's code paths (it measures them, it does not patch them).
"""
