"""Plan validation: every problem reported at once, naming the file and the key."""

from __future__ import annotations

import pytest

from lfubench.studies.plan import PlanError, load_plan

GOOD = """
name = "tiny"
seeds = [0, 1]
[train]
epochs = 2
batch_size = 8
[measure]
device = "cpu"
batch_sizes = [1]
precision = ["fp32"]
[[datasets]]
name = "lits"
kind = "phantom-lits"
cases = 4
[[datasets]]
name = "brats"
kind = "phantom-brats"
[[models]]
name = "lfunet"
label = "LFU-Net w8"
levels = [1, 2, 3, 4]
[[models]]
name = "unet"
base_width = 8
"""


def _write(tmp_path, text):
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_good_plan_expands_to_items(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD))
    assert plan.name == "tiny"
    ids = [i.id for i in plan.items()]
    assert len(ids) == 2 * 2 * 2 and len(set(ids)) == 8
    assert ids[0] == "LFU-Net w8|lits|s0"
    assert "unet base_width=8|brats|s1" in ids
    assert plan.models[0].levels == [1, 2, 3, 4]
    assert plan.models[1].kwargs == {"base_width": 8}


def test_every_problem_is_reported_at_once(tmp_path):
    bad = GOOD.replace("epochs = 2", "epochs = 2\nepoch = 3").replace('name = "unet"', 'name = "unett"')
    bad = bad.replace('kind = "phantom-brats"', 'kind = "brats"\nroot = "missing"')
    bad = bad.replace('precision = ["fp32"]', 'precision = ["fp8"]')
    bad += '[[models]]\nname = "lfunet"\nlabel = "bad"\nbase_width = 12\n'
    bad += '[[models]]\nname = "unet"\nlabel = "u2"\nlevels = [2]\n'
    with pytest.raises(PlanError) as info:
        load_plan(_write(tmp_path, bad))
    lines = str(info.value).splitlines()
    assert lines[0] == "6 problem(s) in plan:"
    text = "\n".join(lines)
    assert "[train]: unknown key 'epoch' (did you mean 'epochs'?)" in text
    assert "models[1]: model 'unett' is not registered (close matches: unet" in text
    assert f"datasets[1] (brats): root folder {tmp_path / 'missing'} does not exist" in text
    assert "[measure]: precision 'fp8' is not one of fp32, fp16, bf16" in text
    assert "models[2]: lfunet: base_width 12 is not divisible by groups 8" in text
    assert "models[3]: 'levels' needs a deep-supervision model with pruning levels" in text
    assert all(line.startswith(str(tmp_path)) for line in lines[1:])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(PlanError, match="plan file not found"):
        load_plan(tmp_path / "nope.toml")
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan(_write(tmp_path, "name = \n"))
    with pytest.raises(PlanError, match="no \\[\\[models\\]\\]"):
        load_plan(_write(tmp_path, '[[datasets]]\nname="x"\nkind="phantom-lits"\n'))


def test_types_and_ranges_are_validated_up_front(tmp_path):
    """Wrong types and out-of-range values fail validation, each on its own line."""
    bad = GOOD.replace("cases = 4", 'cases = "ten"\nsize = 100').replace("epochs = 2", "epochs = 0")
    bad = bad.replace("batch_sizes = [1]", "batch_sizes = [0]\nwarmup = 1.5")
    bad = bad.replace('kind = "phantom-brats"', 'kind = "phantom-brats"\ntest = 1.0\nempty = "zero"')
    with pytest.raises(PlanError) as info:
        load_plan(_write(tmp_path, bad))
    text = str(info.value)
    assert text.startswith("7 problem(s) in plan:")
    assert "datasets[0] (lits): cases must be an integer, got 'ten'" in text
    assert "datasets[0] (lits): size must be a multiple of 16, got 100" in text
    assert "[train]: epochs must be >= 1, got 0" in text
    assert "[measure]: batch_sizes items must be >= 1, got 0" in text
    assert "[measure]: warmup must be an integer, got 1.5" in text
    assert "datasets[1] (brats): test must be < 1, got 1.0" in text
    assert "datasets[1] (brats): empty 'zero' is not one of brats, diagonal, nan" in text
    with pytest.raises(PlanError, match=r"datasets\[1\] \(brats\): 12 cases leave 10 after the test split, "
                                         r"fewer than folds = 12"):
        load_plan(_write(tmp_path, GOOD.replace('"phantom-brats"', '"phantom-brats"\nfolds = 12')))


def test_keys_the_pipeline_sets_are_rejected_with_where_they_belong(tmp_path):
    bad = GOOD.replace("epochs = 2", 'epochs = 2\ndevice = "cuda"\nseed = 3\namp = true\nprecision = "fp16"')
    bad = bad.replace("base_width = 8", "base_width = 8\nin_channels = 1")
    with pytest.raises(PlanError) as info:
        load_plan(_write(tmp_path, bad))
    text = str(info.value)
    assert "[train]: key 'device' is not a plan setting here: set [measure].device" in text
    assert "[train]: key 'seed' is not a plan setting here: list the seeds at the top level" in text
    assert "models[1]: key 'in_channels' is not a plan setting here: the dataset sets it" in text
    assert "[train]: key 'amp' is not a plan setting here: replaced by precision" in text
    assert "[train]: precision 'fp16' needs CUDA, and [measure].device is 'cpu'" not in text  # train unread
    with pytest.raises(PlanError, match=r"precision 'fp16' needs CUDA, and \[measure\].device is 'cpu'"):
        load_plan(_write(tmp_path, GOOD.replace("epochs = 2", 'epochs = 2\nprecision = "fp16"')))


def test_defaults_come_from_the_schema_and_the_dataset_table(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD))
    lits, brats = plan.datasets
    assert (lits.size, lits.empty, lits.cases, lits.test) == (256, "diagonal", 4, 0.2)
    assert lits.shape == [128, 128, 48]
    assert (brats.size, brats.empty, brats.cases) == (192, "brats", 12)
    assert plan.train.epochs == 2 and plan.train.lr == 1e-3 and plan.train.threads is None
    assert plan.measure.timing().max_iters == plan.measure.iterations == 200


def test_overrides_are_applied_and_validated_like_the_file(tmp_path):
    path = _write(tmp_path, GOOD)
    plan = load_plan(path, overrides=["train.epochs=3", "datasets.lits.cases=6", "measure.batch_sizes=[1, 8]",
                                      "models.LFU-Net w8.base_width=16", "models.1.levels=[]", "seeds=[5]",
                                      "measure.device=cpu", "datasets.brats.empty=nan"])
    assert plan.train.epochs == 3 and plan.datasets[0].cases == 6 and plan.measure.batch_sizes == [1, 8]
    assert plan.models[0].kwargs == {"base_width": 16} and plan.seeds == [5]
    assert plan.datasets[1].empty == "nan"
    assert [i.id for i in plan.items()][0] == "LFU-Net w8|lits|s5"
    with pytest.raises(PlanError, match=r"\[train\]: epochs must be an integer, got 'two'"):
        load_plan(path, overrides=["train.epochs=two"])
    with pytest.raises(PlanError) as info:
        load_plan(path, overrides=["datasets.kits.cases=3", "train", "optimizer.lr=1"])
    text = str(info.value)
    assert text.startswith("3 problem(s) in --set:")
    assert "no dataset 'kits' in the plan (there are: lits, brats)" in text
    assert "'train': must look like KEY=VALUE" in text
    assert "'optimizer.lr' is not a plan setting" in text


def test_effective_plan_round_trips(tmp_path):
    """The effective plan (defaults filled in) reads back into the same plan."""
    import tomli_w

    plan = load_plan(_write(tmp_path, GOOD), overrides=["train.epochs=5"])
    again = tmp_path / "effective.toml"
    again.write_text(tomli_w.dumps(plan.to_dict()))
    reread = load_plan(again)
    assert reread.to_dict() == plan.to_dict() and reread.train.epochs == 5


def test_effective_plan_of_a_real_dataset_round_trips(tmp_path):
    """A real dataset's effective plan leaves out the phantom-only settings it may not take."""
    import tomli_w

    from lfubench.bench.data import write_phantom

    write_phantom("lits", tmp_path / "lits", cases=3, shape=(16, 16, 8), seed=0)
    real = f'[[datasets]]\nname = "real"\nkind = "lits"\nroot = "{tmp_path / "lits"}"\n'
    text = GOOD.split("[[datasets]]")[0] + real
    text += "[[models]]" + GOOD.split("[[models]]", 1)[1]
    plan = load_plan(_write(tmp_path, text))
    effective = plan.to_dict()
    assert not {"cases", "shape", "phantom_seed"} & set(effective["datasets"][0])
    again = tmp_path / "effective.toml"
    again.write_text(tomli_w.dumps(effective))
    assert load_plan(again).to_dict() == effective


# --- the device a plan needs ------------------------------------------------------------------

CUDA_PLAN = GOOD.replace('device = "cpu"', 'device = "cuda"')


def test_a_cuda_plan_on_a_machine_without_cuda_is_refused_with_the_set_that_moves_it(tmp_path):
    from lfubench.studies.plan import check_devices

    path = _write(tmp_path, CUDA_PLAN.replace("batch_size = 8", 'batch_size = 8\nprecision = "fp16"'))
    plan = load_plan(path)
    with pytest.raises(PlanError) as info:
        check_devices(plan, None, cuda_devices=0)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: [measure] device is 'cuda', but torch sees no CUDA device here")
    assert text.endswith("to run it on the CPU: --set measure.device=cpu --set train.precision=fp32")
    moved = load_plan(path, overrides=["measure.device=cpu", "train.precision=fp32"])  # the advice works
    check_devices(moved, None, cuda_devices=0)
    check_devices(plan, None, cuda_devices=1)
    check_devices(plan, "cuda:0,cuda:1", cuda_devices=2)


def test_bf16_training_moves_to_the_cpu_without_a_precision_change(tmp_path):
    from lfubench.studies.plan import check_devices

    path = _write(tmp_path, CUDA_PLAN.replace("batch_size = 8", 'batch_size = 8\nprecision = "bf16"'))
    plan = load_plan(path)
    with pytest.raises(PlanError, match=r"on the CPU: --set measure\.device=cpu$"):
        check_devices(plan, None, cuda_devices=0)


def test_devices_with_a_cpu_plan_or_beyond_the_machine_are_refused(tmp_path):
    from lfubench.studies.plan import check_devices

    path = _write(tmp_path, GOOD)
    plan = load_plan(path)
    check_devices(plan, None, cuda_devices=0)
    with pytest.raises(PlanError) as info:
        check_devices(plan, "cuda:0", cuda_devices=1)
    assert str(info.value) == (f"{path}: --devices cuda:0 names GPUs, but [measure] device is 'cpu': the "
                               "items would run on the CPU; add --set measure.device=cuda, or leave out "
                               "--devices (--workers N for several CPU workers)")
    cuda = load_plan(_write(tmp_path, CUDA_PLAN))
    with pytest.raises(PlanError, match=r"--devices cuda:0,cuda:2: this machine has 2 CUDA device\(s\) "
                                        r"\(cuda:0 to cuda:1\); cuda:2 is not one"):
        check_devices(cuda, "cuda:0,cuda:2", cuda_devices=2)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_cli_refuses_a_cuda_plan_here_before_any_work(tmp_path, command, capsys):
    """On this machine (no CUDA) the refusal comes before the run folder is made."""
    from lfubench.cli import main

    if command == "bench":
        path = _write(tmp_path, CUDA_PLAN)
    else:
        from lfubench.studies.shipped import locate

        smoke, _ = locate("smoke", "study")
        path = tmp_path / "smoke.toml"
        path.write_text(smoke.read_text().replace('device = "cpu"', 'device = "cuda"'))
    out = tmp_path / "run"
    assert main([command, str(path), "--out", str(out), "--no-progress"]) == 2
    text = capsys.readouterr().err
    err = [line for line in text.splitlines() if line.startswith(f"lfubench {command}: error: ")]
    assert len(err) == 1 and "Traceback" not in text, text
    assert "[measure] device is 'cuda', but torch sees no CUDA device here" in err[0]
    assert err[0].endswith("--set measure.device=cpu")
    assert not out.exists()
