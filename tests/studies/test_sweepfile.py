"""Reading a sweep study file: a space whose trials cannot all be built is refused when the file
is read, one line per problem naming the family and the setting, by the same check a plan's
models get (build each model, trial-prune it where pruning is searched)."""

from __future__ import annotations

import pytest

from lfubench import models
from lfubench.studies.schema import PlanError
from lfubench.studies.sweepfile import load_study

from ._plans import study_text


def _study(tmp_path, search: str):
    path = tmp_path / "space.toml"
    path.write_text(study_text("space", search))
    return path


def _problems(tmp_path, search: str, overrides=()) -> list[str]:
    with pytest.raises(PlanError) as info:
        load_study(_study(tmp_path, search), overrides=overrides)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{len(lines) - 1} problem(s) in study:"
    return lines[1:]


def test_widths_the_default_groups_do_not_divide_are_refused(tmp_path):
    """``groups`` not searched: LFU-Net keeps its 8 groups, which divide neither 4 nor 12."""
    lines = _problems(tmp_path, 'family = ["lfunet", "unet"]\nbase_width = [4, 12, 16]')
    where = str(tmp_path / "space.toml")
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{where}: [search] lfunet base_width=4: lfunet: base_width 4 is not "
                               "divisible by groups 8")
    assert lines[1].startswith(f"{where}: [search] lfunet base_width=12: lfunet: base_width 12 is not "
                               "divisible by groups 8")
    assert all("unet base_width" not in line.split("lfunet", 1)[0] for line in lines)


def test_searching_groups_or_narrowing_the_widths_makes_it_load(tmp_path):
    study = load_study(_study(tmp_path, 'family = ["lfunet", "unet"]\nbase_width = [4, 12, 16]\n'
                                        "[search.lfunet]\ngroups = [1, 4]"))
    assert study.space.families == ["lfunet", "unet"]
    load_study(_study(tmp_path, 'family = ["lfunet"]\nbase_width = [8, 16]'))


def test_bn_importance_for_lfunet_is_refused_once_and_unet_is_not_named(tmp_path):
    search = ('family = ["lfunet", "unet"]\nbase_width = [8, 16]\nprune_level = [3, 4]\n'
              'prune_ratio = {low = 0.0, high = 0.5, step = 0.25}\nprune_importance = "bn"')
    lines = _problems(tmp_path, search)
    assert len(lines) == 1, lines
    line = lines[0]
    assert "[search] lfunet " in line and "prune_importance='bn'" in line
    assert "importance 'bn' needs batch norm after every pruned convolution" in line
    assert "of lfunet's combinations" in line


def test_bn_importance_in_a_continuous_ratio_range_is_checked_at_its_ends(tmp_path):
    lines = _problems(tmp_path, 'family = ["lfunet"]\nprune_ratio = {low = 0.1, high = 0.6}\n'
                                'prune_importance = ["l1", "bn"]')
    assert len(lines) == 1 and "prune_importance='bn'" in lines[0], lines


def test_bn_importance_only_for_unet_loads(tmp_path):
    study = load_study(_study(tmp_path, 'family = ["lfunet", "unet"]\nprune_ratio = [0.0, 0.5]\n'
                                        '[search.unet]\nprune_importance = "bn"'))
    assert study.space.per_family["unet"]["prune_importance"].fixed == "bn"


def test_an_override_is_checked_like_the_file(tmp_path):
    from lfubench.studies.shipped import locate

    smoke, _ = locate("smoke", "study")
    load_study(smoke)
    with pytest.raises(PlanError, match=r"\[search\] lfunet .*importance 'bn' needs batch norm"):
        load_study(smoke, overrides=["search.prune_importance=bn"])


def test_each_configuration_is_built_once(tmp_path, monkeypatch):
    """Pruning variants of one model share its build."""
    built = []
    create = models.create_model

    def counting(name, **kwargs):
        if "widths" not in kwargs:  # not the pruned rebuilds
            built.append((name, tuple(sorted(kwargs.items()))))
        return create(name, **kwargs)

    monkeypatch.setattr(models, "create_model", counting)
    load_study(_study(tmp_path, 'family = ["unet"]\nbase_width = [4, 8]\n'
                                'prune_ratio = {low = 0.0, high = 0.5, step = 0.25}\n'
                                'prune_scope = ["local", "global"]'))
    assert len(built) == len(set(built)) == 2, built


def test_the_checked_combinations_are_the_models_trials_draw(tmp_path):
    """Every model a sampler draws is one of the checked combinations, and each combination is
    drawn (the check walks the same conditional space as Space.suggest)."""
    import optuna

    study = load_study(_study(tmp_path, 'family = ["lfunet", "unet"]\nbase_width = [8, 16]\n'
                                        'groups = [2, 8]\nprune_level = [3, 4]\nprune_ratio = [0.0, 0.5]\n'
                                        'prune_scope = ["local", "global"]'))

    def key(spec):
        return (spec.name, tuple(sorted(spec.kwargs.items())), spec.prune_ratio, spec.prune_importance,
                spec.prune_scope)

    checked = {key(s) for f in study.space.families for s in study.space.combinations(f)}
    # lfunet: 2 widths x 2 groups x 2 levels x (unpruned + 2 scopes); unet: 2 widths x 3
    assert len(checked) == 2 * 2 * 2 * 3 + 2 * 3
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = set()
    for _ in range(400):
        trial = sampler.ask()
        drawn.add(key(study.space.suggest(trial)))
        sampler.tell(trial, 0.0)
    assert drawn == checked
