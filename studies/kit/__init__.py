"""The study kit: what every study shares, each file one concern.

- ``config``: :func:`config_field` (meaning, bounds, command-line parser),
  :func:`check_fields`, :func:`component_from`, canonical JSON and the config hash.
- ``cli``: the tyro command line, :func:`parse_config`, :func:`main`, :class:`Runtime`,
  :class:`Overrides` and the EMA spelling shared by trainings (:func:`parse_ema`, :func:`ema_text`).
- ``store``: :class:`ResultStore`, the run directory (verified cells, artifacts, lock,
  sessions) and the errors it raises.
- ``provenance``: git revision, package versions, machine and devices.
- ``progress``: :class:`Progress`, lines with an ETA and phase timers.
- ``cells``: :class:`Cell`, :class:`Artifact` (:func:`equinox_artifact`, :func:`replicas_artifact`),
  :class:`Diverged`, :func:`run_cells`.
- ``stats``: intervals over replicates, paired differences, pooled proportions.
- ``keys``: :class:`Keys`, named PRNG key streams from coordinates only.
- ``results``: :class:`Results` and :func:`finish`, the end of every run.
- ``load``: :func:`load_run` for figures.

A study module is science: its Config, its presets, its cells. See README, "How to add
a study".
"""

from studies.kit.cells import Artifact as Artifact
from studies.kit.cells import Cell as Cell
from studies.kit.cells import Diverged as Diverged
from studies.kit.cells import Replicas as Replicas
from studies.kit.cells import equinox_artifact as equinox_artifact
from studies.kit.cells import replicas_artifact as replicas_artifact
from studies.kit.cells import run_cells as run_cells
from studies.kit.cli import Invocation as Invocation
from studies.kit.cli import Overrides as Overrides
from studies.kit.cli import Runtime as Runtime
from studies.kit.cli import ema_text as ema_text
from studies.kit.cli import main as main
from studies.kit.cli import parse_config as parse_config
from studies.kit.cli import parse_ema as parse_ema
from studies.kit.config import TRAINING_LIMITS as TRAINING_LIMITS
from studies.kit.config import check_fields as check_fields
from studies.kit.config import component_from as component_from
from studies.kit.config import config_field as config_field
from studies.kit.config import config_hash as config_hash
from studies.kit.config import config_to_dict as config_to_dict
from studies.kit.keys import Keys as Keys
from studies.kit.load import Run as Run
from studies.kit.load import WrongStudyError as WrongStudyError
from studies.kit.load import load_run as load_run
from studies.kit.progress import Progress as Progress
from studies.kit.results import Results as Results
from studies.kit.results import finish as finish
from studies.kit.results import print_tables as print_tables
from studies.kit.progress import format_duration as format_duration
from studies.kit.stats import Interval as Interval
from studies.kit.stats import late_mean as late_mean
from studies.kit.stats import over_replicates as over_replicates
from studies.kit.stats import paired_difference as paired_difference
from studies.kit.stats import pooled_proportion as pooled_proportion
from studies.kit.stats import slope_over_replicates as slope_over_replicates
from studies.kit.stats import summarise as summarise
from studies.kit.stats import summarise_paired as summarise_paired
from studies.kit.store import ConfigMismatchError as ConfigMismatchError
from studies.kit.store import DamagedFileError as DamagedFileError
from studies.kit.store import ResultStore as ResultStore
from studies.kit.store import RunDirectoryError as RunDirectoryError
from studies.kit.store import RunLockedError as RunLockedError
from studies.kit.store import rows_to_frame as rows_to_frame
from studies.kit.store import write_text_atomically as write_text_atomically

__all__ = [
    "Artifact",
    "Cell",
    "ConfigMismatchError",
    "DamagedFileError",
    "Diverged",
    "Interval",
    "Invocation",
    "Keys",
    "Overrides",
    "Progress",
    "Replicas",
    "ResultStore",
    "Results",
    "Run",
    "RunDirectoryError",
    "RunLockedError",
    "Runtime",
    "TRAINING_LIMITS",
    "WrongStudyError",
    "check_fields",
    "component_from",
    "config_field",
    "config_hash",
    "config_to_dict",
    "ema_text",
    "equinox_artifact",
    "finish",
    "format_duration",
    "late_mean",
    "load_run",
    "main",
    "over_replicates",
    "paired_difference",
    "parse_config",
    "parse_ema",
    "pooled_proportion",
    "print_tables",
    "replicas_artifact",
    "rows_to_frame",
    "run_cells",
    "slope_over_replicates",
    "summarise",
    "summarise_paired",
    "write_text_atomically",
]
