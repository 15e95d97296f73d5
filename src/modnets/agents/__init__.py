"""The perception-action framework (thesis ch. 3): environments, interfaces, control modules, operators, agents.

An :class:`Agent` repeats a loop: its control module digests the representation R(t) of an environment
and selects an operator, and the operator turns R(t) into R(t+1), until every example selects the stop
action. The :class:`Interface` keeps the environment and R(t) in sync; a :class:`Trace` records a run.
The training regimes of agents live in :mod:`modnets.train`.

Public names:

- ``Agent``: the perception-action loop (thesis 3.1, Fig. 3.1).
- ``ControlModule``: digestor + policy: selects the next operator from R(t) and its own state.
- ``Decision``: one step of a policy.
- ``Policy``: decides which action to take next from the digestor's embedding and the previous action.
- ``Environment``: a batch of problem instances and their ground-truth dynamics.
- ``EpisodeRecorder``: an interface that records the environment's state after every read and write.
- ``AgentOperator``: a whole agent used as one operator of a higher-level agent (thesis 3.1.1).
- ``Interface``: keeps an environment and its representation R(t) in sync.
- ``ModuleOperator``: an operator whose functional is a module (or function) of tensors.
- ``Operator``: a primitive operation of an agent: R(t) in, R(t+1) out.
- ``Representation``: named tensors that share their leading (batch) dimension: R(t).
- ``Trace``: what happened during a run of the perception-action loop, for a batch of examples.
- ``Transitions``: every application of one action in a trace: R(t) before it and R(t+1) after it.
"""

from ._agent import Agent as Agent
from ._control import ControlModule as ControlModule
from ._control import Decision as Decision
from ._control import Policy as Policy
from ._environment import Environment as Environment
from ._episode import EpisodeRecorder as EpisodeRecorder
from ._hierarchy import AgentOperator as AgentOperator
from ._interface import Interface as Interface
from ._operator import ModuleOperator as ModuleOperator
from ._operator import Operator as Operator
from ._representation import Representation as Representation
from ._trace import Trace as Trace
from ._trace import Transitions as Transitions
