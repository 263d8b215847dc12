"""Integrations with other frameworks, each an optional extra imported only on demand.

* ``integrations.langchain`` — ``ChatModelplex``, a LangChain ``BaseChatModel`` over the ``Router``
  (``pip install 'modelplex[langchain]'``).

Owns: nothing but this index. Importing ``modelplex.integrations`` imports no framework; each
submodule imports its framework itself and fails with the extra to install when it is missing.

Must not touch: routing (the router decides), the frameworks' global state.
"""

from __future__ import annotations

__all__: list[str] = []
