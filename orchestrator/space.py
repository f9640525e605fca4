"""Search-space files: the pydantic schema, validation against the trainer's own schema, and expansion.

A search space names the trainer config every trial starts from (`base`), the
groups of configurations to try (each group is one Optuna study: its sampler
proposes the group's configurations and its pruner compares them, and only
them), how many random restarts each configuration gets, and the rows of the
results table that the best-dev selection fills (paper §5, Tables 1 and 2).

Keys of `fixed`, `axes` and `where` are dotted trainer-config paths such as
`procedure.alpha.mode`; `python -m trainer.describe` lists them all.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from trainer import ConfigError, parse_config
from trainer.config import TASK_CONFIGS, read_yaml_tree, set_dotted
from trainer.data.parallel import split_files
from trainer.tasks import TASKS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # MLflow experiment, Optuna study and directory names


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, bool | int | float | str):
        raise ValueError("expected a number, a string, true/false or null")
    return value


Scalar = Annotated[Any, AfterValidator(_scalar)]
# Set by the sweep itself (epoch budget, restarts), so neither base nor an axis may set them.
RESERVED_KEYS = ("task", "seed", "optim.epochs")


class SpaceError(ValueError):
    """A search-space file that cannot be used; the message names the file and the field path."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatRange(StrictModel):
    """A continuous axis, for the random and TPE samplers."""

    distribution: Literal["uniform", "loguniform"] = Field(
        description="'uniform' on [low, high], or 'loguniform' (uniform in log space; for learning rates)."
    )
    low: float = Field(description="Lower bound (inclusive).")
    high: float = Field(description="Upper bound (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        if self.distribution == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self


class IntRange(StrictModel):
    """An integer axis, for the random and TPE samplers."""

    distribution: Literal["int"] = Field(description="Integers from low to high in steps of step.")
    low: int = Field(description="Lower bound (inclusive).")
    high: int = Field(description="Upper bound (inclusive).")
    step: int = Field(1, ge=1, description="Spacing of the allowed values.")
    log: bool = Field(False, description="Sample uniformly in log space (needs step 1 and low >= 1).")

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        if self.log and (self.step != 1 or self.low < 1):
            raise ValueError("log needs step 1 and low >= 1")
        return self


Distribution = Annotated[FloatRange | IntRange, Field(discriminator="distribution")]
Axis = Annotated[
    Annotated[list[Scalar], Field(min_length=1), Tag("values")] | Annotated[Distribution, Tag("distribution")],
    Discriminator(
        lambda value: "values" if isinstance(value, list) else "distribution" if isinstance(value, dict) else None,
        custom_error_type="axis",
        custom_error_message="an axis is a list of values or {distribution: uniform|loguniform|int, low, high}",
    ),
]
"""A list of values (grid points, or categories for random/TPE) or a distribution."""
AXIS_TAGS = ("values", "distribution", "uniform", "loguniform", "int")


class Group(StrictModel):
    """Configurations that compete with each other: one Optuna study, one pruning scope."""

    fixed: dict[str, Any] = Field(
        default_factory=dict, description="Trainer fields every configuration of this group sets, by dotted path."
    )
    axes: dict[str, Axis] = Field(
        default_factory=dict,
        description="Tuned trainer fields of this group, by dotted path (added to the top-level axes, which they "
        "override): a list of values, or {distribution: uniform|loguniform|int, low, high}.",
    )


class Row(StrictModel):
    """One row of the results table: the trials whose trainer config matches `where`, from any group."""

    label: str = Field(description="Row label in the summary, e.g. 'α-soft annealed (greedy)'.")
    table: str = Field("1", description="Table the row belongs to (the paper: '1' procedures, '2' decay k).")
    where: dict[str, Scalar | list[Scalar]] = Field(
        min_length=1,
        description="Trainer fields (dotted paths) and the value, or list of accepted values, a trial must have.",
    )


class GridSampler(StrictModel):
    type: Literal["grid"] = Field(description="Every combination of every group's axis values (lists only).")


class RandomSampler(StrictModel):
    type: Literal["random"] = Field(description="Independent random draws (optuna.samplers.RandomSampler).")
    samples: int = Field(ge=1, description="Configurations drawn per group.")
    seed: int = Field(0, description="Seed of the draws: the same seed proposes the same configurations.")


class TpeSampler(StrictModel):
    type: Literal["tpe"] = Field(description="Tree-structured Parzen estimator (optuna.samplers.TPESampler).")
    samples: int = Field(ge=1, description="Configurations proposed per group.")
    seed: int = Field(0, description="Seed of the proposals.")
    startup: int = Field(
        5, ge=0, description="Random configurations per group before TPE starts modelling (n_startup_trials)."
    )


Sampler = Annotated[GridSampler | RandomSampler | TpeSampler, Field(discriminator="type")]


class NoPruner(StrictModel):
    type: Literal["none"] = Field(description="Every trial runs its full epoch budget.")


class PruningRules(StrictModel):
    """What every pruner here keeps to, whichever of Optuna's decides (issue 17): decisions compare
    configurations of one group only (one study per group), rest on the mean of several seeds, and wait until
    the configurations differ in what they are fed."""

    seeds: int = Field(
        2,
        ge=1,
        description="Restarts a decision rests on: a configuration's first `seeds` restarts start together and "
        "the pruner compares the mean of their dev scores at each epoch (capped at `restarts`). One seed alone "
        "would prune on seed noise as often as on the configuration.",
    )
    max_gold_probability: float = Field(
        0.95,
        gt=0,
        le=1,
        description="No verdict at an epoch where the configuration and every completed configuration it is "
        "compared with were fed gold more than this share of the time (ε, as each epoch logged it): while they "
        "are all close to teacher forcing (epoch 1 is all gold; k = 100 stays above 0.97 for 100 epochs), their "
        "k and α barely act and their differences are seed noise.",
    )


class MedianPruner(PruningRules):
    type: Literal["median"] = Field(
        description="Stop a configuration whose best score so far is worse than the median of completed "
        "configurations of its group at the same epoch (optuna.pruners.MedianPruner)."
    )
    startup: int = Field(2, ge=0, description="Completed configurations per group before anything is pruned.")
    warmup_epochs: int = Field(
        1, ge=0, description="No pruning before this epoch: a configuration always runs at least this many epochs."
    )
    interval: int = Field(1, ge=1, description="Check every this many epochs after the warm-up.")


class SuccessiveHalvingPruner(PruningRules):
    type: Literal["successive_halving"] = Field(
        description="Asynchronous successive halving (optuna.pruners.SuccessiveHalvingPruner)."
    )
    min_resource: int | Literal["auto"] = Field("auto", description="Epochs before the first rung.")
    reduction_factor: int = Field(3, ge=2, description="Only the best 1/reduction_factor go on at each rung.")
    min_early_stopping_rate: int = Field(0, ge=0, description="Skips the first rungs (s in the ASHA paper).")


class HyperbandPruner(PruningRules):
    type: Literal["hyperband"] = Field(description="Hyperband over successive-halving brackets (optuna.pruners).")
    min_resource: int = Field(1, ge=1, description="Epochs before the first rung of the most aggressive bracket.")
    reduction_factor: int = Field(3, ge=2, description="Only the best 1/reduction_factor go on at each rung.")


Pruner = Annotated[NoPruner | MedianPruner | SuccessiveHalvingPruner | HyperbandPruner, Field(discriminator="type")]


class Metric(StrictModel):
    """What selection and pruning rank by. It must be what the trainer keeps best.pt by and what the summary
    scores on test, the task's own metric, or a row would be chosen on one figure and reported on another."""

    name: str = Field(
        "dev_score",
        pattern=r"^dev_\w+$",
        description="Per-epoch validation figure to optimise: dev_score, the task's metric (F1 for ner, BLEU for "
        "mt), or that metric by name (dev_f1, dev_bleu), which is the same figure. Other figures the trainer logs, "
        "such as dev_chrf, are refused: best.pt is kept on dev_score. Selection never looks at the test split.",
    )
    mode: Literal["max", "min"] = Field(
        "max", description="Whether higher (max) or lower (min) is better; F1 and BLEU both need max."
    )


class Resources(StrictModel):
    cpus: float = Field(1.0, gt=0, description="CPU cores per trial (also torch's thread count).")
    gpus: float = Field(0.0, ge=0, description="GPUs per trial; a fraction such as 0.5 shares a GPU.")


class SearchSpace(StrictModel):
    """A sweep: trials = configurations (from the groups' samplers) × restarts (seeds)."""

    name: str | None = Field(
        None, pattern=NAME_PATTERN, description="MLflow experiment and default output name; default: the file name."
    )
    description: str = Field("", description="Free text shown by --dry-run.")
    task: str = Field("ner", description="Trainer task (the `task` key of the trainer config).")
    base: dict[str, Any] = Field(
        default_factory=dict,
        description="Trainer config shared by every trial, as in configs/*.yaml (without task, seed, optim.epochs).",
    )
    epochs: int = Field(ge=1, description="Epoch budget of every trial (the trainer's optim.epochs).")
    restarts: int = Field(3, ge=1, description="Random restarts per configuration: seeds seed, seed+1, ...")
    seed: int = Field(1, description="Trainer seed of the first restart.")
    axes: dict[str, Axis] = Field(default_factory=dict, description="Tuned trainer fields shared by every group.")
    groups: dict[str, Group] = Field(
        min_length=1,
        description="Named groups of configurations; a configuration competes (sampler, pruner) only within its "
        "group, so a row that must be reported should not share a group with a row that could out-prune it.",
    )
    rows: dict[str, Row] = Field(min_length=1, description="Rows of the results table, by id.")
    sampler: Sampler = Field(
        default_factory=lambda: GridSampler(type="grid"), description="How configurations are proposed."
    )
    pruner: Pruner = Field(default_factory=lambda: NoPruner(type="none"), description="Early stopping of trials.")
    metric: Metric = Field(default_factory=Metric, description="What selection and pruning optimise.")
    resources: Resources = Field(default_factory=Resources, description="Resources reserved per trial.")
    max_concurrent: int | None = Field(
        None, ge=1, description="Trials running at once; null: as many as the cluster's CPUs/GPUs hold."
    )

    @model_validator(mode="after")
    def _names(self) -> SearchSpace:
        for kind, names in (("groups", self.groups), ("rows", self.rows)):
            for name in names:
                if not re.match(NAME_PATTERN, name):
                    raise ValueError(f"{kind}.{name}: use letters, digits, '_', '.' and '-' only")
        return self

    def group_axes(self, group: str) -> dict[str, Any]:
        return {**self.axes, **self.groups[group].axes}

    def grid(self, group: str) -> list[dict[str, Scalar]]:
        """Every combination of the group's axis values, in file order (grid sampler only)."""
        axes = self.group_axes(group)
        combos = itertools.product(*axes.values())
        return [dict(zip(axes, values, strict=True)) for values in combos]

    @property
    def scouts(self) -> int:
        """Restarts of a configuration that run first, together, and that the pruner watches (PruningRules.seeds);
        its other restarts start once they have finished unpruned. 1 without a pruner."""
        return 1 if self.pruner.type == "none" else min(self.pruner.seeds, self.restarts)

    def restarts_of(self, state: str) -> int:
        """The trials a configuration has once its Optuna trial is in `state`: every restart if it completed,
        its scouts if it was pruned or failed (they always all run)."""
        return self.restarts if state == "COMPLETE" else self.scouts

    def planned_configurations(self, group: str) -> int:
        axes = self.group_axes(group)
        if self.sampler.type == "grid" or not axes:  # a group without axes has one configuration
            return math.prod(len(values) for values in axes.values())
        return self.sampler.samples

    def trainer_tree(self, group: str, params: dict[str, Any], restart: int) -> dict:
        """The trainer config (a plain dict) of one trial: base, the group's fixed fields, the axis values."""
        tree = copy.deepcopy(self.base)
        tree["task"] = self.task
        for key, value in {**self.groups[group].fixed, **params}.items():
            set_dotted(tree, key, copy.deepcopy(value))  # a section given whole must not share the space's dict
        set_dotted(tree, "optim.epochs", self.epochs)
        tree["seed"] = self.seed + restart
        return tree

    def rows_of(self, flat_config: dict[str, Any]) -> list[str]:
        """Ids of the rows whose `where` the (flattened, validated) trainer config matches."""
        return [name for name, row in self.rows.items() if matches(row.where, flat_config)]

    def fingerprint(self) -> str:
        """Canonical JSON of everything that decides which trials run (a resumed sweep must not change it)."""
        decisive = self.model_dump(mode="json", exclude={"description", "max_concurrent", "rows"})
        return json.dumps(decisive, sort_keys=True)


def matches(where: dict[str, Any], flat_config: dict[str, Any]) -> bool:
    for key, wanted in where.items():
        accepted = wanted if isinstance(wanted, list) else [wanted]
        if key not in flat_config or not any(_same(flat_config[key], value) for value in accepted):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    """100 and 100.0 are the same k; True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def config_id(group: str, number: int) -> str:
    """A configuration's name: its group and its Optuna trial number in that group's study."""
    return f"{group}-{number:03d}"


def trial_key(group: str, number: int, restart: int) -> str:
    """A trial's name: its configuration and restart index."""
    return f"{config_id(group, number)}-r{restart}"


def validated_flat_config(tree: dict, source: str) -> dict[str, Any]:
    """Validates a trainer tree with the trainer's own schema and flattens its JSON form."""
    return flatten(parse_config(tree, source).model_dump(mode="json"))


def load_space(path: Path | str, overrides: list[str] = (), test_split: bool = True) -> SearchSpace:
    """Reads and validates a search-space file, trainer configs, data paths and rows included; raises SpaceError.

    Relative data paths become absolute, taken from the directory the command runs in: Tune runs every trial in
    a folder of its own. `test_split` False (--no-test) lets the test split be missing until a later rerun.
    """
    path = Path(path)
    try:
        tree = read_yaml_tree(path, overrides)
    except ConfigError as error:
        raise SpaceError(str(error)) from None
    tree.setdefault("name", re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem))
    try:
        space = SearchSpace.model_validate(tree)
    except ValidationError as error:
        lines = [f"{path}: invalid search space"]
        for item in error.errors():
            lines.append(f"  {field_path(item['loc']) or '<root>'}: {item['msg']}")
        raise SpaceError("\n".join(lines)) from None
    check_space(space, str(path), test_split)
    return space


def field_path(loc: tuple) -> str:
    """The YAML path of a pydantic error location, without the union tags pydantic inserts
    (sampler/pruner 'type', the axis kind and distribution)."""
    parts: list[str] = []
    rest = [str(part) for part in loc if "[" not in str(part)]
    while rest:
        parts.append(rest.pop(0))
        if parts in (["sampler"], ["pruner"]) and rest:
            rest.pop(0)
        if len(parts) >= 2 and parts[-2] == "axes":
            while rest and rest[0] in AXIS_TAGS:
                rest.pop(0)
    return ".".join(parts)


def check_space(space: SearchSpace, source: str, test_split: bool = True) -> None:
    """Checks what the schema alone cannot: trainer fields exist and validate, data exists, grid needs lists,
    rows match. Makes relative data paths absolute first (see load_space)."""
    for key in space.base:
        if key in RESERVED_KEYS:
            raise SpaceError(f"{source}: base.{key}: set by the sweep (use the top-level epochs / seed / task)")
    for reserved in ("optim.epochs",):
        if reserved in flatten(space.base):
            raise SpaceError(f"{source}: base.{reserved}: the epoch budget is the top-level 'epochs'")
    if space.task not in TASKS:
        raise SpaceError(f"{source}: task: must be one of {', '.join(TASKS)}, not {space.task!r}")
    _check_metric(space, source)
    _absolute_paths(space, path_fields(TASK_CONFIGS[space.task]))
    _check_trainer_configs(space, source, test_split)
    candidates = {group: _candidate_values(space, group, source) for group in space.groups}
    for row_id, row in space.rows.items():
        known = candidates[next(iter(space.groups))]
        for key in row.where:
            if key not in known:
                raise SpaceError(f"{source}: rows.{row_id}.where.{key}: no such trainer field")
        if not any(_could_match(row.where, values) for values in candidates.values()):
            raise SpaceError(f"{source}: rows.{row_id}.where: matches no configuration of any group")


def _check_metric(space: SearchSpace, source: str) -> None:
    """The task's metric only (issue 7): best.pt is kept on dev_score and the summary scores it on test, so
    selecting or pruning on another figure would choose on one number and report another."""
    task_metric = TASKS[space.task].metric
    allowed = ("dev_score", f"dev_{task_metric}")
    if space.metric.name not in allowed:
        raise SpaceError(
            f"{source}: metric.name: {space.metric.name} is not what task {space.task} keeps best.pt by and scores "
            f"on test ({task_metric}); use {' or '.join(allowed)}"
        )
    if space.metric.mode != "max":
        raise SpaceError(f"{source}: metric.mode: {space.metric.name} ({task_metric}) is better when higher; use max")


def path_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted names of the trainer fields that hold a path (data.train_path, data.path, data_dir, ...)."""
    found = set()
    for name, field in model.model_fields.items():
        kinds = typing.get_args(field.annotation) or (field.annotation,)
        if Path in kinds:
            found.add(prefix + name)
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= path_fields(kind, f"{prefix}{name}.")
    return found


def _absolute_paths(space: SearchSpace, fields: set[str]) -> None:
    """Relative paths in base, fixed fields, axes and rows, taken from the working directory (issue 7: a
    relative path failed in every trial, since Tune runs each in a folder of its own)."""
    space.base = _absolute(space.base, "", fields)
    for holder in (space, *space.groups.values()):
        holder.axes = {key: _absolute(axis, key, fields) for key, axis in holder.axes.items()}
    for group in space.groups.values():
        group.fixed = {key: _absolute(value, key, fields) for key, value in group.fixed.items()}
    for row in space.rows.values():
        row.where = {key: _absolute(value, key, fields) for key, value in row.where.items()}


def _absolute(value: Any, field: str, fields: set[str]) -> Any:
    """`value` as set for the trainer field `field`, a leaf, a section (dict) or an axis (list of leaves)."""
    if isinstance(value, dict):
        return {key: _absolute(item, f"{field}.{key}" if field else key, fields) for key, item in value.items()}
    if isinstance(value, list):
        return [_absolute(item, field, fields) for item in value]
    if field in fields and isinstance(value, str):
        return os.path.abspath(os.path.expanduser(value))
    return value


def _missing_data(config, test_split: bool) -> str | None:
    """What a trial of `config` would not find among its data files (fetched data sets are not checked)."""
    data = config.data
    if data.dataset != "files":
        return None
    splits = ("train", "dev", "test") if test_split else ("train", "dev")
    no_test = "; the chosen checkpoints are scored on test: give it, or pass --no-test"
    if config.task == "ner":
        for split in splits:
            path = getattr(data, f"{split}_path")
            if path is None:
                return f"data.{split}_path: not set{no_test}"
            if not path.is_file():
                problem = "a folder, not a file" if path.is_dir() else "no such file"
                return f"data.{split}_path: {problem}: {path}" + (no_test if split == "test" else "")
        return None
    if not data.path.is_dir():
        return f"data.path: {'not a folder' if data.path.exists() else 'no such folder'}: {data.path}"
    for split in splits:
        for path in split_files(data.path, split, data.source_lang, data.target_lang):
            if not path.is_file():
                return f"data.path: no file {path.name} in {data.path}" + (no_test if split == "test" else "")
    return None


def _check_trainer_configs(space: SearchSpace, source: str, test_split: bool) -> None:
    for group_name, group in space.groups.items():
        axes = space.group_axes(group_name)
        fixed = flatten(group.fixed)  # {optim: {epochs: 3}} sets optim.epochs too
        for key in list(fixed) + list(axes):
            if key in RESERVED_KEYS:
                kind = "fixed" if key in fixed else "axes"
                raise SpaceError(f"{source}: groups.{group_name}.{kind}.{key}: set by the sweep, not by a group")
        for key, axis in axes.items():
            if space.sampler.type == "grid" and not isinstance(axis, list):
                raise SpaceError(
                    f"{source}: groups.{group_name}.axes.{key}: the grid sampler needs a list of values, "
                    "not a distribution (or use sampler type random / tpe)"
                )
        for params in _probe_params(axes):
            where = ", ".join(f"{k}={v!r}" for k, v in params.items())
            label = f"{source}: groups.{group_name}" + (f" with {where}" if where else "")
            try:
                tree = space.trainer_tree(group_name, params, restart=0)
            except ConfigError as error:  # a dotted key through a value that is not a section
                raise SpaceError(f"{label}: {error}") from None
            try:
                config = parse_config(tree, label)
            except ConfigError as error:
                raise SpaceError(str(error)) from None
            missing = _missing_data(config, test_split)
            if missing:
                raise SpaceError(f"{label}: {missing}")


def _probe_params(axes: dict[str, Any]) -> list[dict[str, Any]]:
    """Each axis value (each list item, each distribution's bounds) once, the other axes at their first value."""
    if not axes:
        return [{}]
    first = {key: _endpoints(axis)[0] for key, axis in axes.items()}
    probes = []
    for key, axis in axes.items():
        for value in _endpoints(axis):
            probes.append({**first, key: value})
    return probes


def _endpoints(axis: Any) -> list[Any]:
    return list(axis) if isinstance(axis, list) else [axis.low, axis.high]


def _candidate_values(space: SearchSpace, group: str, source: str) -> dict[str, list[Any] | None]:
    """For each trainer field, the values the group's configurations can take (None: any, a distribution)."""
    flat = validated_flat_config(space.trainer_tree(group, {}, restart=0), source)
    values: dict[str, list[Any] | None] = {key: [value] for key, value in flat.items()}
    for key, axis in space.group_axes(group).items():
        values[key] = list(axis) if isinstance(axis, list) else None
    return values


def _could_match(where: dict[str, Any], candidates: dict[str, list[Any] | None]) -> bool:
    for key, wanted in where.items():
        options = candidates.get(key)
        if options is None:
            continue
        accepted = wanted if isinstance(wanted, list) else [wanted]
        if not any(_same(option, value) for option in options for value in accepted):
            return False
    return True


def describe_axis(axis: Any) -> str:
    if isinstance(axis, list):
        return "[" + ", ".join(str(value) for value in axis) + "]"
    if isinstance(axis, IntRange):
        return f"int {axis.low}..{axis.high} step {axis.step}" + (" (log)" if axis.log else "")
    return f"{axis.distribution} {axis.low:g}..{axis.high:g}"
