"""The perception-action framework (thesis ch. 3): environments, interfaces, control modules, operators, agents."""

from ._agent import Agent as Agent
from ._control import ControlModule as ControlModule
from ._control import Decision as Decision
from ._control import Policy as Policy
from ._environment import Environment as Environment
from ._hierarchy import AgentOperator as AgentOperator
from ._interface import Interface as Interface
from ._operator import ModuleOperator as ModuleOperator
from ._operator import Operator as Operator
from ._representation import Representation as Representation
from ._trace import Trace as Trace
from ._trace import Transitions as Transitions
