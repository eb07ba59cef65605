"""figures.command: the run a figure is drawn from, and the shared command line."""

from __future__ import annotations

import dataclasses

import pytest

from figures.command import NothingToDrawError, figure_main, run_to_draw
from studies import kit


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = kit.config_field(3, "n")


def _saved(path, metrics=("floor",)):
    store = kit.ResultStore(path, Config(), study="toy")
    store.save_cell("a", [{"metric": metric, "value": 1.0} for metric in metrics], wall_time_s=0.1)
    store.close("complete")
    return path


def _has_w1(table):
    return (table["metric"] == "w1").any()


def test_run_to_draw_returns_the_run_and_its_figures_directory(tmp_path):
    run, out_dir = run_to_draw(_saved(tmp_path / "r", ("floor", "w1")), study="toy", drawable=_has_w1, missing="cell")
    assert out_dir == tmp_path / "r" / "figures" and run.study == "toy"
    assert set(run.table["metric"]) == {"floor", "w1"} and run.config["n"] == 3


def test_run_to_draw_names_the_run_and_what_is_missing(tmp_path):
    with pytest.raises(NothingToDrawError, match=r"/r holds no trained cell yet \(only \['a'\]\): nothing to draw"):
        run_to_draw(_saved(tmp_path / "r"), study="toy", drawable=_has_w1, missing="trained cell")
    with pytest.raises(kit.WrongStudyError):
        run_to_draw(_saved(tmp_path / "s", ("w1",)), study="other", drawable=_has_w1, missing="cell")


def test_figure_main_prints_the_paths_or_exits_2_naming_the_problem(tmp_path, capsys):
    def draw(run_dir):
        run, out_dir = run_to_draw(run_dir, study="toy", drawable=_has_w1, missing="trained cell")
        return [out_dir / "a.png", out_dir / "a.pdf"]

    figure_main(draw, prog="figures.toy", description=None, argv=[str(_saved(tmp_path / "r", ("w1",)))])
    assert capsys.readouterr().out.split() == [str(tmp_path / "r" / "figures" / name) for name in ("a.png", "a.pdf")]
    for run_dir in (_saved(tmp_path / "s"), tmp_path / "absent"):
        with pytest.raises(SystemExit) as info:
            figure_main(draw, prog="figures.toy", description=None, argv=[str(run_dir)])
        assert info.value.code == 2 and capsys.readouterr().err.startswith("error: ")
