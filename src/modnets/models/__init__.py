"""Presets: paper architectures as functions returning composed parts.

Each preset (``nmn``, ``film``, ``imn``, ``modular_mlp``, ``sorting_agent``, ...) is a function that builds
a model from the parts of :mod:`modnets.modules`, :mod:`modnets.compose`, :mod:`modnets.routing` and
:mod:`modnets.agents`; the classes it composes are exported too, so any part can be replaced. The
assemblies describe the presets as graphs for module-wise training (:mod:`modnets.plan`).

Public names:

- ``ASSEMBLIES``: preset name -> (assembly builder, one-line description).
- ``example_assembly``: the four modules of thesis Figure 4.1 as an assembly.
- ``get_assembly``: the assembly of a preset name.
- ``nmn_assembly``: the NMN preset as an assembly: what each module reads and where the loss is.
- ``FiLM``: image and question to answer logits through FiLM-conditioned residual blocks.
- ``FiLMBlock``: a FiLM-conditioned residual block.
- ``film``: the FiLM preset, sized like ``nmn`` with a question prior.
- ``IMN``: the IMN: compositional modules, identity modules, one decoder, an optional ID classifier.
- ``CompositionalModule``: the encoder of a Lie-group VAE: ``x -> (mu, logvar)`` and ``z -> exp(sum_i z_i A_i)``.
- ``DeconvDecoder``: decodes a transform to an image as the Lie-group VAE does (transposed convolutions).
- ``IdClassifier``: a fully connected classifier of the ground-truth identity (shape) from an identity matrix.
- ``IdentityModules``: ``n`` learnable transforms ``exp(B_j)`` that never see the input.
- ``LieEncoding``: the posterior of the compositional modules' latents.
- ``TransformDecoder``: decodes a transform to an image: an MLP on the flattened matrix.
- ``imn``: the IMN preset of the paper (``m = n = 5`` by default).
- ``IMN_DECODERS``: the decoders ``imn`` builds: ``"mlp"``, ``"deconv"``.
- ``NMN``: a Neural Module Network: an image stem and a module library run by one program per example.
- ``PRIOR_KEY``: the batch key of cached question-prior logits ``(batch, n_answers)``.
- ``PRIOR_MERGES``: how ``NMN`` may merge the question prior with the root module's answer.
- ``AnswerScores``: an ``NMN``'s answer scores on a batch, branch by branch.
- ``nmn``: the NMN preset: a CNN stem with coordinate channels, a module library, optionally a question prior.
- ``nmn_library``: the NMN modules: find, relate, same, and, or, exist, count, describe, equal, compare, not.
- ``easy_vqa_library``: ``nmn_library`` over easy-vqa's vocabulary (no ``relate``).
- ``Combine``: ``and(a, b)`` / ``or(a, b)``: combine two attention maps with the interface's algebra.
- ``Compare``: ``compare[comparison](a, b)``: whether map ``a`` holds as many objects as map ``b``, more or fewer.
- ``Describe``: ``describe[attribute](mask)``: answer a question about the attended object's attribute.
- ``Equal``: ``equal[attribute](a, b)``: whether the objects two maps attend to share an attribute.
- ``Find``: ``find[value]``: attend to the cells whose features match an attribute value.
- ``Measure``: ``exist(mask)`` / ``count(mask)``: answer from the attention map alone.
- ``Relate``: ``relate[relation](mask)``: move attention to the cells in a spatial relation to the attended ones.
- ``Same``: ``same[attribute](mask)``: attend to the other objects that share an attribute with the attended one.
- ``Negate``: ``not(a)``: swap the scores of the answers "yes" and "no".
- ``EncodedQuestions``: a batch of questions as token indices.
- ``QuestionEncoder``: questions to vectors: word embeddings read by a GRU.
- ``QuestionPrior``: answer logits from the question alone.
- ``QuestionVocabulary``: word tokens to indices (0 is padding, 1 the unknown word).
- ``tokenize``: lower-case word tokens of a question (letters and digits; punctuation dropped).
- ``dense_mlp``: the non-modular baseline of equal per-example compute: ``modular_mlp`` with one module per layer.
- ``modular_mlp``: a ``ModularStack`` of ``n_layers`` layers of ``n_modules`` MLP modules.
- ``ControllerPolicy``: the sorting controller: an LSTM over time, then a linear layer to the selection logits.
- ``PointerShift``: neural pointer functional: an LSTM along the sequence, a linear layer, a sigmoid.
- ``ReferenceDigestor``: hand-written digestor: decodes R(t) into three features.
- ``ReferencePolicy``: hand-written selection-sort controller over ``ReferenceDigestor`` features.
- ``ShiftReference``: hand-written pointer functional: the sequence delayed by one position.
- ``SortingDigestor``: the sorting digestor: an LSTM reads R(t) position by position.
- ``SwapNet``: neural swap functional: a bidirectional LSTM over digits and both pointers.
- ``SwapReference``: hand-written swap functional: exchanges the digit vectors under A and B.
- ``sorting_agent``: the list-sorting agent of thesis 3.2 (neural by default); any part can be replaced.
- ``sorting_control``: the control module: LSTM digestor + controller, or the hand-written selection-sort rule.
- ``sorting_operators``: the four operators of the sorting agent, in action order.
- ``SCAN_ACTIONS``: the six SCAN actions; in an action-sequence tensor action ``i`` is class ``1 + i``, 0 the blank.
- ``SCAN_MAX_ACTIONS``: the longest action sequence of any SCAN command (48).
- ``ActionLexicon``: ``action[word]``: the action sequence a SCAN word means, a learned table.
- ``CopyModule``: a SCAN composition module: outputs mix input positions and constants, by input occupancy only.
- ``ScanExecutor``: the grammar-given modular SCAN executor: a module library run on the commands' parses.
- ``decode_actions``: action classes from action-sequence probabilities, cut at the first blank.
- ``scan_executor``: the SCAN executor preset: a lexicon and one copy module per production and argument.
- ``scan_program``: the layout of a SCAN command: its parse by the grammar, as a program of executor modules.
- ``GRUSeq2Seq``: a GRU encoder-decoder with Luong attention.
- ``SCAN_WORDS``: the 13 words of SCAN commands.
- ``ScanVocabulary``: token indices of SCAN commands and action sequences (padding, start, end).
- ``Seq2Seq``: a token-level encoder-decoder: teacher-forced scores and greedy decoding.
- ``TransformerSeq2Seq``: a small Transformer encoder-decoder with sinusoidal positions.
- ``scan_gru``: the GRU seq2seq baseline for SCAN (CPU-sized; the paper's sizes in its docstring).
- ``scan_transformer``: the Transformer seq2seq baseline for SCAN (2 + 2 layers of width 64).
"""

from ._assemblies import ASSEMBLIES as ASSEMBLIES
from ._assemblies import example_assembly as example_assembly
from ._assemblies import get_assembly as get_assembly
from ._assemblies import nmn_assembly as nmn_assembly
from ._film import FiLM as FiLM
from ._film import FiLMBlock as FiLMBlock
from ._film import film as film
from ._imn import IMN as IMN
from ._imn import IMN_DECODERS as IMN_DECODERS
from ._imn import CompositionalModule as CompositionalModule
from ._imn import DeconvDecoder as DeconvDecoder
from ._imn import IdClassifier as IdClassifier
from ._imn import IdentityModules as IdentityModules
from ._imn import LieEncoding as LieEncoding
from ._imn import TransformDecoder as TransformDecoder
from ._imn import imn as imn
from ._nmn import NMN as NMN
from ._nmn import PRIOR_KEY as PRIOR_KEY
from ._nmn import PRIOR_MERGES as PRIOR_MERGES
from ._nmn import AnswerScores as AnswerScores
from ._nmn import nmn as nmn
from ._nmn import nmn_library as nmn_library
from ._nmn_compare import Compare as Compare
from ._nmn_compare import Equal as Equal
from ._nmn_easy_vqa import easy_vqa_library as easy_vqa_library
from ._nmn_modules import Combine as Combine
from ._nmn_modules import Describe as Describe
from ._nmn_modules import Find as Find
from ._nmn_modules import Measure as Measure
from ._nmn_modules import Relate as Relate
from ._nmn_modules import Same as Same
from ._nmn_negate import Negate as Negate
from ._question import EncodedQuestions as EncodedQuestions
from ._question import QuestionEncoder as QuestionEncoder
from ._question import QuestionPrior as QuestionPrior
from ._question import QuestionVocabulary as QuestionVocabulary
from ._question import tokenize as tokenize
from ._routed import dense_mlp as dense_mlp
from ._routed import modular_mlp as modular_mlp
from ._scan_executor import SCAN_ACTIONS as SCAN_ACTIONS
from ._scan_executor import SCAN_MAX_ACTIONS as SCAN_MAX_ACTIONS
from ._scan_executor import ActionLexicon as ActionLexicon
from ._scan_executor import CopyModule as CopyModule
from ._scan_executor import ScanExecutor as ScanExecutor
from ._scan_executor import decode_actions as decode_actions
from ._scan_executor import scan_executor as scan_executor
from ._scan_executor import scan_program as scan_program
from ._scan_seq2seq import SCAN_WORDS as SCAN_WORDS
from ._scan_seq2seq import GRUSeq2Seq as GRUSeq2Seq
from ._scan_seq2seq import ScanVocabulary as ScanVocabulary
from ._scan_seq2seq import Seq2Seq as Seq2Seq
from ._scan_seq2seq import TransformerSeq2Seq as TransformerSeq2Seq
from ._scan_seq2seq import scan_gru as scan_gru
from ._scan_seq2seq import scan_transformer as scan_transformer
from ._sorting import ControllerPolicy as ControllerPolicy
from ._sorting import PointerShift as PointerShift
from ._sorting import ReferenceDigestor as ReferenceDigestor
from ._sorting import ReferencePolicy as ReferencePolicy
from ._sorting import ShiftReference as ShiftReference
from ._sorting import SortingDigestor as SortingDigestor
from ._sorting import SwapNet as SwapNet
from ._sorting import SwapReference as SwapReference
from ._sorting import sorting_agent as sorting_agent
from ._sorting import sorting_control as sorting_control
from ._sorting import sorting_operators as sorting_operators
