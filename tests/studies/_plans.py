"""Plan and sweep study text shared by the tests: a tiny budget on a tiny LiTS phantom, CPU.

Each table has one home here (:func:`train`, :func:`measure`, :func:`lits`, :func:`objectives`);
a test writes what its file adds (a study's search space, a plan's models) and joins the parts
with :func:`toml_text`, or takes a whole sweep study from :func:`study_text`. The parts contain no
braces of their own, so a text built from them can still be a ``str.format`` template.
"""

from __future__ import annotations


def table(header: str, *keys: str) -> str:
    """A TOML table: ``header`` as written (``[train]``, ``[[datasets]]``), then its ``keys`` lines."""
    return "\n".join([header, *(k.strip("\n") for k in keys if k)]) + "\n"


def toml_text(*parts: str) -> str:
    """The parts (top-level keys first, then tables) one after another, a blank line between them."""
    return "\n".join(p.strip("\n") + "\n" for p in parts if p)


def train(epochs: int | str = 1, *keys: str) -> str:
    """The ``[train]`` table: ``epochs`` (a number, or a ``{placeholder}``), then ``keys``."""
    return table("[train]", f"epochs = {epochs}", *keys)


def measure(*keys: str) -> str:
    """The ``[measure]`` table on the CPU, then ``keys``."""
    return table("[measure]", 'device = "cpu"', *keys)


def lits(cases: int = 5, tiny: bool = True) -> str:
    """The ``[[datasets]]`` entry of a LiTS phantom named ``lits`` of ``cases`` cases; ``tiny``:
    32x32x8 volumes whose slices are resized to 32x32 (otherwise the phantom's default sizes)."""
    keys = ['name = "lits"', 'kind = "phantom-lits"', f"cases = {cases}"]
    if tiny:
        keys += ["shape = [32, 32, 8]", "size = 32"]
    return table("[[datasets]]", *keys)


def objectives(*keys: str) -> str:
    """A sweep's ``[objectives]``: mean Dice up, parameters down, then ``keys`` (constraints)."""
    return table("[objectives]", 'maximize = ["dice:mean"]', 'minimize = ["params"]', *keys)


def nsga2(population_size: int) -> str:
    """A ``[sampler]`` table: NSGA-II seeded 0, of ``population_size``."""
    return table("[sampler]", 'name = "nsga2"', "seed = 0", f"population_size = {population_size}")


def study_text(name: str, search: str, n_trials: int | str = 4, measure_keys: str = "",
               objective_keys: str = "", sampler: str = "") -> str:
    """A sweep study named ``name`` on the tiny phantom (seed 0, one epoch, CPU): its ``[search]``
    keys, ``n_trials`` (a number or a ``{placeholder}``), ``[measure]`` and ``[objectives]`` keys
    beyond the shared ones, and a ``[sampler]`` table (:func:`nsga2`; none: the study's default)."""
    return toml_text(f'name = "{name}"\nseed = 0\nn_trials = {n_trials}', train(), measure(measure_keys),
                     lits(), table("[search]", search), objectives(objective_keys), sampler)


#: a plan's sections up to its models (format with ``epochs``), after its ``name = ...`` line
TINY_SECTIONS = "\n" + toml_text(
    "seeds = [0]",
    train("{epochs}", "batch_size = 8", "threads = 2"),
    measure("batch_sizes = [1]", "iterations = 5", "warmup = 3", "threads = 2"),
    lits())
