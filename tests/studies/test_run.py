"""The run folder (:class:`studies.run.Run`): layout, storage, the effective plan or study, its
trials and records; the workers that share it; and a storage password that never reaches a log
line, a message or the output of ``lfubench bench`` / ``lfubench sweep``."""

from __future__ import annotations

import socket
from pathlib import Path

import optuna
import pytest

from lfubench.bench.errors import LfubenchError
from lfubench.cli import main
from lfubench.reports.record import ItemRecord
from lfubench.studies import run as run_module
from lfubench.studies.plan import Plan, load_plan
from lfubench.studies.run import Run, masked_url, slug, spawn_workers, worker_devices
from lfubench.studies.sweepfile import SweepStudy, load_study
from tests.lfubench.helpers import make_run, pdf

from ._plans import TINY_SECTIONS
from .helpers import fake_record, write_study

PLAN = 'name = "tiny"' + TINY_SECTIONS.format(epochs=1) + """[[models]]
name = "unet"
label = "U-Net w4"
base_width = 4
"""

SECRET = "s3cret-Pw"
URL = f"postgresql://lfu:{SECRET}@db.example:5432/lfubench"


@pytest.mark.parametrize("url,shown", [
    (URL, "postgresql://lfu:***@db.example:5432/lfubench"),
    ("postgresql+psycopg://lfu:p%40ss:w/rd@10.0.0.1/db", "postgresql+psycopg://lfu:***@10.0.0.1/db"),
    ("postgresql://:pw@host/db", "postgresql://:***@host/db"),
    ("postgresql://lfu@host/db?sslmode=require&password=pw&x=1",
     "postgresql://lfu@host/db?sslmode=require&password=***&x=1"),
    ("postgresql://lfu@host:5432/db", "postgresql://lfu@host:5432/db"),
    ("postgresql://host:5432/db", "postgresql://host:5432/db"),
    ("sqlite:////runs/a/study.db", "sqlite:////runs/a/study.db"),
    ("journal:/runs/a:b/journal.log", "journal:/runs/a:b/journal.log"),
])
def test_masked_url_hides_only_the_password(url, shown):
    assert masked_url(url) == shown


def test_layout_and_default_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run("runs/a")
    assert run.folder == Path("runs/a") and run.kind is None and run.effective_file is None
    assert run.storage_url == f"sqlite:///{tmp_path}/runs/a/study.db" and run.own_storage
    assert run.db == Path("runs/a/study.db")
    assert run.item_dir("U-Net w4|lits|s0") == Path("runs/a/items") / slug("U-Net w4|lits|s0")
    assert (run.data_dir, run.cache_dir, run.sweep_dir) == (Path("runs/a/data"), Path("runs/a/cache"),
                                                            Path("runs/a/sweep"))
    other = Run("runs/a", URL)
    assert other.storage_url == URL and not other.own_storage
    assert other.storage_shown == "postgresql://lfu:***@db.example:5432/lfubench"
    assert slug("UNet++") != slug("UNet+")


def test_effective_plan_is_written_once_read_back_typed_and_guards_the_folder(tmp_path):
    (tmp_path / "tiny.toml").write_text(PLAN)
    plan = load_plan(tmp_path / "tiny.toml")
    run = Run(tmp_path / "run")
    run.write_effective(plan)
    assert run.kind == "plan" and run.effective_file == tmp_path / "run" / "plan.toml"
    text = run.effective_file.read_text()
    assert text.startswith(f"# the effective plan of this run: {plan.path} with its --set overrides")
    back = Run.open(tmp_path / "run").effective()
    assert isinstance(back, Plan) and back.to_dict() == plan.to_dict()
    run.write_effective(plan)  # the same plan again: kept as it is
    assert run.effective_file.read_text() == text
    changed = load_plan(tmp_path / "tiny.toml", overrides=["train.epochs=2", "seeds=[1]"])
    with pytest.raises(LfubenchError, match=r"^.*/run holds a run of a different plan \(differs in: seeds, "
                       r"train\); choose another --out, or delete the folder to start over$"):
        run.write_effective(changed)


def test_effective_study_may_change_its_budget_not_its_meaning(tmp_path):
    path = write_study(tmp_path, n_trials=4)
    run = Run(tmp_path / "run")
    run.write_effective(load_study(path))
    assert run.kind == "sweep"
    run.write_effective(load_study(path, overrides=["n_trials=6"]))  # a new budget is kept
    study = run.effective()
    assert isinstance(study, SweepStudy) and study.settings.n_trials == 6
    with pytest.raises(LfubenchError, match=r"holds a sweep of a different study \(differs in: train\)"):
        Run(tmp_path / "run").write_effective(load_study(path, overrides=["train.epochs=3"]))


def test_open_names_what_is_missing(tmp_path):
    with pytest.raises(LfubenchError, match=r"^.*/nothing: no such run folder$"):
        Run.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LfubenchError, match=r"^.*/empty: not a run folder \(no plan.toml or study.toml\)$"):
        Run.open(tmp_path / "empty")


def test_trials_and_records_of_a_folder(tmp_path):
    (tmp_path / "tiny.toml").write_text(PLAN)
    plan = load_plan(tmp_path / "tiny.toml")
    run = Run(tmp_path / "run")
    run.write_effective(plan)
    with pytest.raises(LfubenchError, match=r"/run: no study.db \(a run with another --storage: use "
                       r"--storage and --study\)$"):
        Run.open(tmp_path / "run").trials()
    item = plan.items()[0]
    record = ItemRecord(item=item.id, model="unet", label="U-Net w4", dataset="lits", seed=0, value=0.5,
                        metrics=[{"item": item.id, "dataset": "lits", "value": 0.5}],
                        train={"seconds": 1.0}, run_dir=str(tmp_path / "run"))
    study = optuna.create_study(storage=run.storage_url, study_name="tiny", direction="maximize")
    dist = {"item": optuna.distributions.CategoricalDistribution([item.id])}
    study.add_trial(optuna.trial.create_trial(params={"item": item.id}, distributions=dist, value=0.5,
                                              user_attrs=record.to_attrs()))
    opened = Run.open(tmp_path / "run")
    assert [t.params["item"] for t in opened.trials()] == [item.id]
    assert opened.records() == [record]


def test_worker_devices():
    with pytest.raises(LfubenchError, match="--devices must look like cuda:0,cuda:1"):
        worker_devices("gpu0", 1)
    with pytest.raises(LfubenchError, match="does not match the 2 --devices"):
        worker_devices("cuda:0,cuda:1", 3)
    with pytest.raises(LfubenchError, match="--devices names a device twice"):
        worker_devices("cuda:0,cuda:0", 1)
    with pytest.raises(LfubenchError, match="--workers must be at least 1, got 0"):
        worker_devices(None, 0)
    assert worker_devices("cuda:0, cuda:3", 1) == ["0", "3"] and worker_devices(None, 2) == [None, None]


def test_spawn_workers_starts_one_tagged_process_per_device(monkeypatch, tmp_path):
    started = []

    class FakeProcess:
        def __init__(self, cmd, env):
            started.append((cmd, env))
            self.code = 2 if len(started) == 1 else 0

        def wait(self):
            return self.code

    monkeypatch.setattr(run_module.subprocess, "Popen", FakeProcess)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    codes = spawn_workers(["sweep", "s.toml"], tmp_path, "sqlite:///x.db", ["0", "1"], ["--no-show"],
                          env={"OMP_NUM_THREADS": "8", "LFU_EXTRA": "1"})
    assert codes == [2, 0]  # an error a worker reported is its own line, not a crash
    cmds = [cmd[1:] for cmd, _ in started]
    assert cmds == [["-m", "lfubench", "sweep", "s.toml", "--out", str(tmp_path), "--storage", "sqlite:///x.db",
                     "--no-show", "--worker-tag", f"w{k}"] for k in range(2)]
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["0", "1"]
    assert all(env["OMP_NUM_THREADS"] == "3" and env["LFU_EXTRA"] == "1" for _, env in started)
    started.clear()
    monkeypatch.setattr(FakeProcess, "wait", lambda self: -9)
    with pytest.raises(LfubenchError, match=r"worker exit codes \[-9\]: a worker was killed or crashed"):
        spawn_workers(["bench", "p.toml"], tmp_path, "sqlite:///x.db", [None])


# --- the storage password -----------------------------------------------------------------------


@pytest.fixture
def fake_postgres(monkeypatch, tmp_path):
    """Every RDB storage opens a SQLite file in ``tmp_path``, whatever URL it is given, so a run
    with a PostgreSQL URL gets past connecting and logs what it logs."""

    class Local(optuna.storages.RDBStorage):
        def __init__(self, url, **kwargs):
            super().__init__(f"sqlite:///{tmp_path}/local.db")

    monkeypatch.setattr(optuna.storages, "RDBStorage", Local)


def test_bench_never_prints_the_storage_password(fake_postgres, tmp_path, capsys, caplog):
    (tmp_path / "tiny.toml").write_text(PLAN)
    with caplog.at_level("INFO"):
        code = main(["bench", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run"), "--storage", URL,
                     "--max-items", "0", "--no-report", "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "plan tiny: 1 items, 0 already complete; storage postgresql://lfu:***@db.example:5432/lfubench" \
        in caplog.text
    for text in (caplog.text, printed.out, printed.err):
        assert SECRET not in text
    assert SECRET not in "".join(p.read_text() for p in (tmp_path / "run").glob("*.toml"))


def test_sweep_never_prints_the_storage_password(fake_postgres, tmp_path, capsys, caplog, monkeypatch):
    from lfubench.studies import pipeline

    monkeypatch.setattr(pipeline, "run_item", lambda item, plan, run_dir, progress=True, on_validation=None:
                        fake_record(item.model))
    path = write_study(tmp_path, n_trials=2)
    out = str(tmp_path / "run")
    with caplog.at_level("INFO"):
        assert main(["sweep", str(path), "--out", out, "--storage", URL, "--no-progress"]) == 0
        assert main(["sweep", "show", str(path), "--out", out, "--storage", URL]) == 0
    printed = capsys.readouterr()
    shown = "storage postgresql://lfu:***@db.example:5432/lfubench"
    assert f"objectives maximize dice:mean, minimize params; {shown}" in caplog.text  # the first line
    assert f"sweep fake: 2 complete, 0 failed, 0 pruned; {shown}" in printed.out  # the last line
    for text in (caplog.text, printed.out, printed.err):
        assert SECRET not in text
    for file in Path(out).rglob("*"):
        if file.suffix in (".toml", ".csv", ".md"):
            assert SECRET not in file.read_text(), file


def test_a_report_from_a_storage_never_shows_its_password(fake_postgres, tmp_path, capsys, caplog):
    make_run(tmp_path / "a", "runa", 0, run_dir=True)  # its study goes where every RDB storage opens
    out = tmp_path / "paper" / "s.pdf"
    with caplog.at_level("INFO"):
        assert main(["report", "--storage", URL, "--study", "runa", "-o", str(out)]) == 0
        assert main(["report", "--storage", URL, "--study", "nope", "-o", str(out)]) == 2
    printed = capsys.readouterr()
    assert printed.err.strip().endswith("storage postgresql://lfu:***@db.example:5432/lfubench has no study "
                                        "'nope'; it has: runa")
    for text in (caplog.text, printed.out, printed.err, pdf(out)):
        assert SECRET not in text
    for file in out.parent.rglob("*"):
        if file.suffix in (".typ", ".csv", ".md", ".tex"):
            assert SECRET not in file.read_text(), file


def test_an_unreachable_storage_is_one_line_without_its_password(tmp_path, capsys):
    pytest.importorskip("psycopg", reason="psycopg (the postgres extra) is not installed")
    (tmp_path / "tiny.toml").write_text(PLAN)
    url = f"postgresql://lfu:{SECRET}@127.0.0.1:{_free_port()}/lfubench"
    assert main(["bench", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run"), "--storage", url,
                 "--max-items", "0", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lfu:***@127.0.0.1" in err[0] and "cannot connect" in err[0], err
    assert SECRET not in err[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_password_less_url_takes_the_password_from_libpq(tmp_path, capsys, make_postgres):
    """On a real server with password authentication: PGPASSWORD and a password file (PGPASSFILE,
    as ~/.pgpass) serve a URL without a password, as the README says; without them it fails in one
    line; a password in the URL is never printed."""
    pg = make_postgres(user="lfu", password=SECRET)
    (tmp_path / "tiny.toml").write_text(PLAN)
    base = ["bench", str(tmp_path / "tiny.toml"), "--max-items", "0", "--no-report", "--no-progress"]

    def bench(out: str, url: str, **env: str) -> tuple[int, str]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PGPASSFILE", str(tmp_path / "none"))  # not the user's own ~/.pgpass
            mp.delenv("PGPASSWORD", raising=False)
            for key, value in env.items():
                mp.setenv(key, value)
            code = main([*base, "--out", str(tmp_path / out), "--storage", url])
        printed = capsys.readouterr()
        return code, printed.out + printed.err

    assert SECRET in pg.password_url and SECRET not in pg.url
    code, text = bench("with", pg.password_url)
    assert code == 0 and SECRET not in text, text
    code, text = bench("none", pg.url)
    assert code == 2 and "cannot connect" in text and len(text.strip().splitlines()) == 1, text
    assert bench("env", pg.url, PGPASSWORD=SECRET)[0] == 0
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg.port}:lfubench:lfu:{SECRET}\n")
    passfile.chmod(0o600)
    assert bench("file", pg.url, PGPASSFILE=str(passfile))[0] == 0
