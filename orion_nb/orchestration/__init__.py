"""Pure orchestration: states, transition rules and the policies that order them.

Nothing in this package performs I/O, starts threads or knows about Jupyter or databases.
The engine proposes a transition, a :class:`~orion_nb.orchestration.policies.Policy` asks the
rules that apply to that (from, to) pair, and the resulting :class:`Decision` says what the run's
next state is and which rule decided it, with a human reason.

- ``states``: :class:`StateType`, :class:`State` and the named-state constructors.
- ``rules``: the rule base class, :class:`TransitionContext` and :class:`Decision`.
- ``common_rules``: rules shared by task and flow runs (invalid transitions, retries, timeouts).
- ``task_rules``: caching, upstream failure, concurrency limits.
- ``flow_rules``: cancellation propagation.
- ``policies``: :data:`TASK_POLICY` and :data:`FLOW_POLICY`, indexed by transition.
"""
