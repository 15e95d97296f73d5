"""The module hub (thesis 5.3): a local store of trained modules, searchable by signature.

Each entry is a folder with ``module.safetensors`` (the weights) and ``module.json`` (class, constructor
config, signature, provenance, sha256 of the weights), listed in an SQLite index. ``save``, ``load``,
``search``, ``compose``, ``verify`` and ``remove`` work on the default hub (``$MODNETS_HUB`` or the user's data
folder) or on the one given as ``root``; :class:`Hub` is the same on one folder.

Only registered module classes are rebuilt. A manifest records where its class was defined, to name the
module to import, but the hub never imports it by itself: classes become known by importing their module
(``import mypkg``; ``modnets hub ... --import mypkg``) or through the ``modnets.modules`` entry points of
installed packages, loaded at the hub's first look-up of a class.

Public names:

- ``compose``: ``Hub.compose`` on the hub at ``root`` (default: the default hub).
- ``Composition``: a type-correct program over stored modules, found by ``Hub.compose``.
- ``entries``: ``Hub.entries`` on the hub at ``root`` (default: the default hub).
- ``load``: ``Hub.load`` on the hub at ``root`` (default: the default hub).
- ``remove``: ``Hub.remove`` on the hub at ``root`` (default: the default hub).
- ``save``: ``Hub.save`` on the hub at ``root`` (default: the default hub).
- ``search``: ``Hub.search`` on the hub at ``root`` (default: the default hub).
- ``verify``: ``Hub.verify`` on the hub at ``root`` (default: the default hub).
- ``parse_type``: a data type from its short text form: ``"Mask"``, ``"Probs(26)"``, ``"FeatureMap(66)"``.
- ``ENV_VAR``: the environment variable naming the default hub folder, ``"MODNETS_HUB"``.
- ``default_root``: the default hub folder: ``$MODNETS_HUB``, else the user's data folder.
- ``HubEntry``: one stored version of a module, as listed and searched (a summary of its manifest).
- ``Manifest``: what ``module.json`` holds.
- ``Provenance``: how an entry's weights were obtained.
- ``EntryRef``: a reference to an entry: its name and version (``None``: the latest).
- ``parse_ref``: parse ``name`` or ``name@version``.
- ``validate_name``: return ``name`` when it is a valid entry name.
- ``validate_version``: return ``version`` as an int when it is a valid version.
- ``SignatureQuery``: a partial signature to match; every part left ``None`` matches anything.
- ``register_module``: allow a module class in hub entries.
- ``import_modules``: import modules so that their ``register_module`` calls run (``modnets hub --import``).
- ``ENTRY_POINT_GROUP``: the entry-point group through which installed packages declare module classes.
- ``register_type``: allow a data type in signatures and configs.
- ``registered_names``: every allowed module-class name, in the order of registration.
- ``Hub``: a local store of trained modules: save, load, search by signature, verify, remove.
- ``Problem``: something wrong with one entry (or one folder) of a hub.
- ``VerifyReport``: what ``Hub.verify`` (or ``Hub.rebuild_index``) found.
"""

from ._api import compose as compose
from ._api import entries as entries
from ._api import load as load
from ._api import remove as remove
from ._api import save as save
from ._api import search as search
from ._api import verify as verify
from ._codec import parse_type as parse_type
from ._compose import Composition as Composition
from ._location import ENV_VAR as ENV_VAR
from ._location import default_root as default_root
from ._manifest import HubEntry as HubEntry
from ._manifest import Manifest as Manifest
from ._manifest import Provenance as Provenance
from ._names import EntryRef as EntryRef
from ._names import parse_ref as parse_ref
from ._names import validate_name as validate_name
from ._names import validate_version as validate_version
from ._query import SignatureQuery as SignatureQuery
from ._registry import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from ._registry import import_modules as import_modules
from ._registry import register_module as register_module
from ._registry import register_type as register_type
from ._registry import registered_names as registered_names
from ._store import Hub as Hub
from ._verify import Problem as Problem
from ._verify import VerifyReport as VerifyReport
