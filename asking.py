"""``knowgate.ask``: one question in, an answer or an abstention (with its trace) out.

It keeps one ``Knowgate`` per distinct settings in this process, so repeated calls reuse loaded
models and the open index. Long-lived callers (servers, batch runs) hold their own ``Knowgate``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from knowgate.aio import run_sync
from knowgate.roles import Turn
from knowgate.runtime import AskResult, ComposedGraph, Knowgate
from knowgate.settings import Settings, load_settings

# Sessions hold loaded models: a process cycling through settings keeps the latest few, not
# every one it ever saw.
MAX_SESSIONS = 4
_SESSIONS: OrderedDict[str, Knowgate] = OrderedDict()


def session(settings: Settings | None = None) -> Knowgate:
    """The process's ``Knowgate`` for ``settings`` (built on first use; the
    ``MAX_SESSIONS`` most recently used are kept)."""
    settings = settings or load_settings()
    key = settings.model_dump_json()
    if key in _SESSIONS:
        _SESSIONS.move_to_end(key)
    else:
        _SESSIONS[key] = Knowgate(settings)
        while len(_SESSIONS) > MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    return _SESSIONS[key]


async def ask(question: str, settings: Settings | None = None, *, graph: str = "triage",
              history: Sequence[Turn] = (), thread_id: str | None = None) -> AskResult:
    """Answer ``question`` or abstain, through the graph ``graph``.

    Args:
        question: The question.
        settings: Settings (``load_settings()`` when omitted).
        graph: A registered graph name (``triage``, ``fast-only``, ``always-search``, ...).
        history: Earlier turns of the conversation.
        thread_id: Checkpointer thread (with ``settings.checkpoint_db``).

    Raises:
        UserError: The question is empty or too long, or the graph is unknown.
    """
    return await session(settings).ask(question, graph=graph, history=history,
                                       thread_id=thread_id)


def ask_sync(question: str, settings: Settings | None = None, *, graph: str = "triage",
             history: Sequence[Turn] = (), thread_id: str | None = None) -> AskResult:
    """``ask`` for synchronous callers."""
    return run_sync(ask(question, settings, graph=graph, history=history, thread_id=thread_id))


def build_graph(name: str, settings: Settings | None = None) -> ComposedGraph:
    """The registered graph ``name`` with the roles ``settings`` describe, for composing.

    ``graph.graph`` is the compiled LangGraph graph and ``graph.context`` its roles;
    ``await graph.run(question)`` returns the final ``TriageState``.

    Raises:
        UserError: No graph has that name.
    """
    return session(settings).graph(name)
