"""Training algorithms and their infrastructure (logging, evaluation).

Every training algorithm is an :class:`Objective` (``loss``, ``predict``, the batch keys it reads) run by
one loop, :func:`fit`: end to end, REINFORCE, the top-K buffer and generalised EM for routers and for
program policies (with behaviour cloning of gold programs), the exact marginal likelihood over every routing
of a small stack, winner-take-all for the IMN, training through surrogate gradient modules. Module-wise
training runs the stages of a training plan with :func:`run_stages` on a backend, with auxiliary data sets
cached between stages; agents train end to end or operator by operator. Checkpoints, run folders, logging,
devices and hyper-parameter search are the shared infrastructure.

Public names:

- ``AgentTrainingConfig``: hyper-parameters shared by both agent training regimes (Adam, learning rate 0.001).
- ``ModuleJob``: one independent module training.
- ``ModuleJobs``: independent module trainings as one job of ``run_stages``.
- ``Noise``: input noise on a representation: ``noise(rep, generator=g)``.
- ``TraceSource``: expert traces of fresh problems, every R(t) recorded.
- ``TrainResult``: what one agent training run did.
- ``train_agent_end_to_end``: train a whole agent end to end through its unrolled loop (the monolithic regime).
- ``train_control``: train the control module alone on teacher-forced action sequences of the traces.
- ``train_operator``: train one operator's functional alone, from the trace's applications of its action.
- ``EPISODE_REWARDS``: the rewards ``ControlReinforceConfig`` accepts: ``"terminal"``, ``"shaped"``.
- ``ControlReinforceConfig``: settings of ``train_control_by_reward``.
- ``EpisodeBuffer``: the K highest-return episodes so far, replayed by teacher forcing (priority-queue training).
- ``EpisodeLoss``: the REINFORCE terms of a batch of episodes: loss, policy term, entropy.
- ``EpisodeSource``: fresh problems, as an interface to a reset environment.
- ``Potential``: a potential of an environment's state, for reward shaping.
- ``episode_rewards``: the reward of every step of a batch of episodes: terminal, plus potential-based shaping.
- ``reinforce_episode_loss``: the score-function estimator over whole episodes, with an entropy bonus.
- ``returns_to_go``: the discounted sum of the rewards from each step on.
- ``train_control_by_reward``: train an agent's control module by REINFORCE from rewards, the operators fixed.
- ``AuxiliaryDataset``: the examples of an auxiliary data set: dicts of tensors.
- ``AuxiliaryManifest``: what an auxiliary data set holds and who made it.
- ``Shard``: one shard file: its name, how many examples it holds, the sha256 of its bytes.
- ``cache_outputs``: run a trained producer once over a data set and store its outputs as an auxiliary data set.
- ``module_sha256``: a fingerprint of a module: its class and every state entry's name, dtype, shape and bytes.
- ``BACKENDS``: the accepted backends of ``run_stages``: ``"sequential"``, ``"processes"``, ``"ray"``.
- ``StageRun``: what ``run_stages`` did.
- ``check_backend``: a backend name if it is one of ``BACKENDS``; raises ``ConfigError`` otherwise.
- ``run_stages``: run a job for every module of a training plan: stages in order, a stage's modules in parallel.
- ``RoutingBuffer``: the per-example table of the K best routings seen.
- ``TopKBuffer``: the top-K buffer algorithm; ``generalized_em`` is its K = 1 case.
- ``TopKBufferConfig``: settings of ``TopKBuffer``.
- ``generalized_em``: Kirsch et al.'s generalised EM: a ``TopKBuffer`` with an EM configuration.
- ``Checkpointer``: atomic checkpoints of a run in one folder, the newest ``keep`` kept.
- ``CheckpointWarning``: a checkpoint could not be read and an older one is used instead.
- ``Classification``: cross-entropy of ``(B, C)`` class scores against ``(B,)`` labels.
- ``Criterion``: when training (at one curriculum level) is done (thesis 3.2.2).
- ``CriterionMonitor``: windowed averages of a run's measures, and whether the criterion is met.
- ``OutputTerms``: loss and criterion measures of one batch of a functional's outputs.
- ``category_errors``: which examples have a position whose most likely class is not the target class.
- ``output_terms``: cross-entropy, error rate and saturation of outputs of a data type against their targets.
- ``pointer_errors``: which pointers are wrong: not exactly one value above 0.5, or not at the target.
- ``saturation``: fraction of values more than ``threshold`` away from the one-hot reference.
- ``available_devices``: the device names this machine has, e.g. ``["cpu", "cuda:0"]``.
- ``resolve_device``: the ``torch.device`` of a name.
- ``to_device``: a batch with every tensor (and every object with a ``to`` method) on a device.
- ``init_from_env``: start the process group described by torchrun's environment variables, if there is one.
- ``world``: ``(rank, world_size)`` of this process: ``(0, 1)`` outside a process group.
- ``EndToEnd``: minimise ``-log p(y | x, a)`` by backpropagation through the routing or a model without routing.
- ``EndToEndConfig``: settings of ``EndToEnd``.
- ``ExactMarginal``: ``-log sum_a p(y|x,a) p(a|x)`` over every joint routing (soft routing as a mixture of outputs).
- ``ExactMarginalConfig``: settings of ``ExactMarginal``.
- ``GaussianLikelihood``: isotropic Gaussian ``N(y; output, sigma^2 I)``, summed over the non-batch dimensions.
- ``LogLikelihood``: the type of a per-example log-likelihood, ``(output, target) -> (B,)``.
- ``categorical_log_likelihood``: ``log softmax(logits)[target]`` per example.
- ``RunLogger``: log scalars to ``scalars.jsonl`` and (when available) TensorBoard event files.
- ``LoopState``: what a training loop has done so far (saved in its checkpoints).
- ``Stepper``: one optimiser step on a module's trainable parameters (Adam).
- ``NMNModulewiseConfig``: settings of ``train_nmn_modulewise``.
- ``NMNModulewiseResult``: what ``train_nmn_modulewise`` did.
- ``train_nmn_modulewise``: train an NMN module by module along its training plan, in place.
- ``nmn_find_unit``: an NMN's mask-making unit (stem and non-answering modules), as module-wise training sees it.
- ``Objective``: a training algorithm for ``fit``: an ``nn.Module`` with ``loss``, ``predict`` and ``batch_keys``.
- ``check_batch``: check that a batch carries every key an objective reads.
- ``RoutingRegularizers``: weights of the routing regularisers (0 switches one off).
- ``mutual_information_estimate``: batch estimate of ``sum_l I(A_l; X)``.
- ``policy_entropy``: H(A | X = x) per example, summed over layers.
- ``Reinforce``: REINFORCE with a baseline and an entropy bonus, for any routed model.
- ``ReinforceConfig``: settings of ``Reinforce``.
- ``Baseline``: a REINFORCE baseline, subtracted from the reward.
- ``RoutingObjective``: base of the router-training algorithms.
- ``RouterGapWarning``: the routes an objective trains on explain ``y`` far better than the router's own routes.
- ``ProgramObjective``: base of the objectives that learn programs: contexts, batched execution, log p(y | x, a).
- ``ProgramCloning``: maximum likelihood of gold programs under the policy, and of the answers under them.
- ``ProgramSearch``: the top-K buffer over programs: REINFORCE at K = 0, generalised EM at K = 1.
- ``ProgramSearchConfig``: settings of ``ProgramSearch``.
- ``RunDir``: where a training run writes its logs and checkpoints, whether it resumes, whether it shows progress.
- ``ExecutorObjective``: per-position negative log-likelihood of the SCAN executor's action sequences.
- ``Seq2SeqObjective``: token cross-entropy under teacher forcing; greedy decoding to predict.
- ``exact_match``: whether each predicted action sequence equals its target at every position.
- ``scan_collate``: a batch of SCAN pairs for either objective (tokens, parses, action classes), given a vocabulary.
- ``SearchConfig``: settings of one ``search`` (one Optuna study).
- ``SearchResult``: what ``search`` found.
- ``fit_objective``: the trial objective "train a fresh objective with ``fit``, return its validation loss".
- ``search``: run an Optuna study on an objective and return its best trial.
- ``validation_loss``: the mean of an objective's ``"loss"`` term over a data set, in eval mode.
- ``FitConfig``: hyper-parameters of ``fit``.
- ``FitResult``: what ``fit`` did.
- ``fit``: train an ``Objective`` on a data set with Adam, minimising its ``"loss"`` term.
- ``predict``: an objective's ``predict(batch)`` over a whole data set, in order, in eval mode.
- ``predict_routed``: a routed model's outputs and routings over a whole data set, in order, in eval mode.
- ``SurrogateObjective``: a module and its SGM as one ``Objective`` whose loss is the SGM's cross-entropy.
- ``SurrogateScore``: how a module does through its SGM on held-out data (MC-dropout estimates).
- ``surrogate_score``: score a module by its SGM on held-out data: MC-dropout loss and predictive variance.
- ``train_through_surrogate``: train a module (and its SGM with it) on the SGM's loss with ``fit``.
- ``StageTimings``: the measured times of a run of ``run_stages``.
- ``Assignment``: the winning combination of each image.
- ``CombinationModel``: what ``WinnerTakeAll`` needs of a model (``modnets.models.IMN`` provides it).
- ``SubsetPlan``: the non-empty subsets of ``m`` modules and how to build their products.
- ``WinnerTakeAll``: the IMN objective: score every combination, train the winner.
- ``WinnerTakeAllConfig``: settings of ``WinnerTakeAll``.
- ``hessian_penalty``: finite-difference Hessian penalty of a function at ``z``, per example.
- ``subset_plan``: the ``SubsetPlan`` of ``m`` modules (``2^m - 1`` subsets).
- ``subset_products``: the ordered product of every non-empty subset of the modules' transforms.
"""

from ._agents import AgentTrainingConfig as AgentTrainingConfig
from ._agents import ModuleJob as ModuleJob
from ._agents import ModuleJobs as ModuleJobs
from ._agents import Noise as Noise
from ._agents import TraceSource as TraceSource
from ._agents import TrainResult as TrainResult
from ._agents import train_agent_end_to_end as train_agent_end_to_end
from ._agents import train_control as train_control
from ._agents import train_operator as train_operator
from ._agents_reward import EPISODE_REWARDS as EPISODE_REWARDS
from ._agents_reward import ControlReinforceConfig as ControlReinforceConfig
from ._agents_reward import EpisodeLoss as EpisodeLoss
from ._agents_reward import EpisodeSource as EpisodeSource
from ._agents_reward import Potential as Potential
from ._agents_reward import episode_rewards as episode_rewards
from ._agents_reward import reinforce_episode_loss as reinforce_episode_loss
from ._agents_reward import returns_to_go as returns_to_go
from ._agents_reward import train_control_by_reward as train_control_by_reward
from ._auxiliary import AuxiliaryDataset as AuxiliaryDataset
from ._auxiliary import AuxiliaryManifest as AuxiliaryManifest
from ._auxiliary import Shard as Shard
from ._auxiliary import cache_outputs as cache_outputs
from ._auxiliary import module_sha256 as module_sha256
from ._backends import BACKENDS as BACKENDS
from ._backends import StageRun as StageRun
from ._backends import check_backend as check_backend
from ._backends import run_stages as run_stages
from ._buffer import RoutingBuffer as RoutingBuffer
from ._buffer import TopKBuffer as TopKBuffer
from ._buffer import TopKBufferConfig as TopKBufferConfig
from ._buffer import generalized_em as generalized_em
from ._checkpoint import Checkpointer as Checkpointer
from ._checkpoint import CheckpointWarning as CheckpointWarning
from ._classification import Classification as Classification
from ._criterion import Criterion as Criterion
from ._criterion import CriterionMonitor as CriterionMonitor
from ._criterion import OutputTerms as OutputTerms
from ._criterion import category_errors as category_errors
from ._criterion import output_terms as output_terms
from ._criterion import pointer_errors as pointer_errors
from ._criterion import saturation as saturation
from ._device import available_devices as available_devices
from ._device import resolve_device as resolve_device
from ._device import to_device as to_device
from ._distributed import init_from_env as init_from_env
from ._distributed import world as world
from ._end_to_end import EndToEnd as EndToEnd
from ._end_to_end import EndToEndConfig as EndToEndConfig
from ._episode_buffer import EpisodeBuffer as EpisodeBuffer
from ._exact_marginal import ExactMarginal as ExactMarginal
from ._exact_marginal import ExactMarginalConfig as ExactMarginalConfig
from ._likelihood import GaussianLikelihood as GaussianLikelihood
from ._likelihood import LogLikelihood as LogLikelihood
from ._likelihood import categorical_log_likelihood as categorical_log_likelihood
from ._logging import RunLogger as RunLogger
from ._loop import LoopState as LoopState
from ._loop import Stepper as Stepper
from ._nmn_modulewise import NMNModulewiseConfig as NMNModulewiseConfig
from ._nmn_modulewise import NMNModulewiseResult as NMNModulewiseResult
from ._nmn_modulewise import nmn_find_unit as nmn_find_unit
from ._nmn_modulewise import train_nmn_modulewise as train_nmn_modulewise
from ._objective import Objective as Objective
from ._objective import check_batch as check_batch
from ._program_cloning import ProgramCloning as ProgramCloning
from ._program_objective import ProgramObjective as ProgramObjective
from ._program_search import ProgramSearch as ProgramSearch
from ._program_search import ProgramSearchConfig as ProgramSearchConfig
from ._regularizers import RoutingRegularizers as RoutingRegularizers
from ._regularizers import mutual_information_estimate as mutual_information_estimate
from ._regularizers import policy_entropy as policy_entropy
from ._reinforce import Reinforce as Reinforce
from ._reinforce import ReinforceConfig as ReinforceConfig
from ._routing_objective import Baseline as Baseline
from ._routing_objective import RouterGapWarning as RouterGapWarning
from ._routing_objective import RoutingObjective as RoutingObjective
from ._run_dir import RunDir as RunDir
from ._scan import ExecutorObjective as ExecutorObjective
from ._scan import Seq2SeqObjective as Seq2SeqObjective
from ._scan import exact_match as exact_match
from ._scan import scan_collate as scan_collate
from ._search import SearchConfig as SearchConfig
from ._search import SearchResult as SearchResult
from ._search import fit_objective as fit_objective
from ._search import search as search
from ._search import validation_loss as validation_loss
from ._supervised import FitConfig as FitConfig
from ._supervised import FitResult as FitResult
from ._supervised import fit as fit
from ._supervised import predict as predict
from ._supervised import predict_routed as predict_routed
from ._surrogate import SurrogateObjective as SurrogateObjective
from ._surrogate import SurrogateScore as SurrogateScore
from ._surrogate import surrogate_score as surrogate_score
from ._surrogate import train_through_surrogate as train_through_surrogate
from ._timings import StageTimings as StageTimings
from ._winner_take_all import Assignment as Assignment
from ._winner_take_all import CombinationModel as CombinationModel
from ._winner_take_all import SubsetPlan as SubsetPlan
from ._winner_take_all import WinnerTakeAll as WinnerTakeAll
from ._winner_take_all import WinnerTakeAllConfig as WinnerTakeAllConfig
from ._winner_take_all import hessian_penalty as hessian_penalty
from ._winner_take_all import subset_plan as subset_plan
from ._winner_take_all import subset_products as subset_products
