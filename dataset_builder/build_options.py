"""The options of a dataset build, in one value checked once, before any work.

:class:`BuildOptions` is what ``sound-of-story build`` makes of its flags and what
:func:`.build.build_dataset` and :func:`.build.merge_shards` take. A bad value raises ``ValueError``
naming the command line flag (the command turns it into exit code 2).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal, get_args

from .engines import DEFAULT_ENGINE, Engine, check_engine
from .processing import ProcessingParams

PAPER_TEST_SHARE = 1300 / 27354  # the paper's test split: 1,300 of 27,354 stories
PAPER_GENERATION_TEST_SHARE = 879 / 185_341  # the paper's generation test split: 879 of 185,341 slices, at random
CONFIG_NAMES = ("stories", "generation")
GenerationSplit = Literal["random", "story"]
GENERATION_SPLITS: tuple[str, ...] = get_args(GenerationSplit)
DEFAULT_LSMDC_TARGET_S = 150.0  # the paper's stories: about 20 LSMDC clips
DEFAULT_MAX_SHARD_SIZE = "500MB"


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How to build: which configs, how to split, how to process each story, where to run.

    The split and shard-size options (``configs``, ``test_size``, ``generation_split``,
    ``generation_test_size``, ``max_shard_size``) are all that :func:`.build.merge_shards` uses: the
    processing parameters of a merged build come from its shards.
    """

    configs: tuple[str, ...] = CONFIG_NAMES  # in this order in the card (and the build id)
    params: ProcessingParams = ProcessingParams()  # None: these defaults
    test_size: float | int = PAPER_TEST_SHARE  # stories in test, by movie: a share below 1, or a count
    # "random": the generation config's test slices drawn over slices (generation_test_size of them, a share or a
    # count); "story": each slice in its story's split, so no story is in both
    generation_split: GenerationSplit = "random"
    generation_test_size: float | int = PAPER_GENERATION_TEST_SHARE
    lsmdc_target_s: float = DEFAULT_LSMDC_TARGET_S  # LSMDC clips are joined until a story is this long
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE  # of a Parquet file, as datasets reads it ("500MB", bytes)
    num_proc: int = 1  # processes of the local engine
    engine: Engine = DEFAULT_ENGINE
    ray_address: str | None = None  # with engine "ray": the cluster to join (None: a local Ray)
    shard_index: int | None = None  # a cluster shard: this part of the manifest, of num_shards
    num_shards: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "configs", tuple(self.configs))
        unknown = [c for c in self.configs if c not in CONFIG_NAMES]
        if unknown or not self.configs:
            raise ValueError(f"--config must name some of {', '.join(CONFIG_NAMES)}, got {list(self.configs)}")
        if self.params is None:
            object.__setattr__(self, "params", ProcessingParams())
        if not isinstance(self.params, ProcessingParams):
            raise TypeError(f"params must be ProcessingParams, got {type(self.params).__name__}")
        for flag, value in (("--test-size", self.test_size), ("--generation-test-size", self.generation_test_size)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{flag} must be a finite number >= 0 (a share below 1 or a count), got {value}")
        if self.generation_split not in GENERATION_SPLITS:
            raise ValueError(
                f"--generation-split must be one of {', '.join(GENERATION_SPLITS)}, got {self.generation_split!r}"
            )
        if not (math.isfinite(self.lsmdc_target_s) and self.lsmdc_target_s > 0):
            raise ValueError(f"--lsmdc-target-seconds must be a finite number > 0, got {self.lsmdc_target_s}")
        if self.lsmdc_target_s > self.params.max_story_seconds:
            raise ValueError(
                f"--lsmdc-target-seconds ({self.lsmdc_target_s:g}) is over --max-story-seconds "
                f"({self.params.max_story_seconds:g}): every joined LSMDC story would fail"
            )
        _check_shard_size(self.max_shard_size)
        if self.num_proc < 1:
            raise ValueError(f"--num-proc must be at least 1, got {self.num_proc}")
        check_engine(self.engine, self.ray_address)
        if self.sharded and not (
            self.shard_index is not None and self.num_shards is not None and 0 <= self.shard_index < self.num_shards
        ):
            raise ValueError(
                f"--shard-index must be in [0, --num-shards), got {self.shard_index} of {self.num_shards}"
            )

    @property
    def sharded(self) -> bool:
        """This build processes one cluster shard of the manifest (and writes no dataset)."""
        return self.shard_index is not None or self.num_shards is not None

    def shard_of(self, items: Sequence) -> list:
        """This shard's part of ``items`` (every item when not sharded): every ``num_shards``-th, from ``shard_index``."""
        return list(items[self.shard_index :: self.num_shards] if self.sharded else items)


def _check_shard_size(size: str | int) -> None:
    from datasets.utils.py_utils import convert_file_size_to_int

    try:
        size_bytes = convert_file_size_to_int(size)
    except (TypeError, ValueError):
        size_bytes = None
    if not isinstance(size_bytes, int) or size_bytes <= 0:
        raise ValueError(f"--max-shard-size must be a size such as 500MB, or a number of bytes > 0, got {size!r}")


def with_overrides(options: BuildOptions | None, overrides: dict) -> BuildOptions:
    """``options`` (the defaults when None) with the fields named in ``overrides`` replaced, all checked again."""
    if options is not None and not isinstance(options, BuildOptions):
        raise TypeError(f"options must be BuildOptions, got {type(options).__name__}")
    return dataclasses.replace(options or BuildOptions(), **overrides)


__all__ = [
    "BuildOptions",
    "CONFIG_NAMES",
    "DEFAULT_LSMDC_TARGET_S",
    "DEFAULT_MAX_SHARD_SIZE",
    "GENERATION_SPLITS",
    "GenerationSplit",
    "PAPER_GENERATION_TEST_SHARE",
    "PAPER_TEST_SHARE",
    "with_overrides",
]
