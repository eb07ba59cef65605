"""figures.command: the run a figure is drawn from, a module's draw built from its figures, and the
shared command line."""

from __future__ import annotations

import dataclasses

import pytest

from figures.command import NothingToDrawError, figure_command, figure_draw, figure_main, run_to_draw
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


def _figure(name, calls):
    """A figure that records what it was given and 'writes' `name`.pdf and `name`.png."""
    def figure(run, out_dir):
        calls.append((name, run.study, run.config["n"], out_dir))
        return [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    figure.__name__ = name
    return figure


def test_figure_draw_draws_each_figure_of_the_run_in_order(tmp_path):
    calls = []

    def nothing_to_show(run, out_dir):  # a figure whose rows the run does not hold
        calls.append(("nothing_to_show",))
        return []

    draw = figure_draw(study="toy", drawable=_has_w1, missing="trained cell",
                       figures=(_figure("curves", calls), nothing_to_show, _figure("samples", calls)))
    out_dir = tmp_path / "r" / "figures"
    assert draw(_saved(tmp_path / "r", ("w1",))) == [out_dir / name for name in
                                                     ("curves.pdf", "curves.png", "samples.pdf", "samples.png")]
    assert calls == [("curves", "toy", 3, out_dir), ("nothing_to_show",), ("samples", "toy", 3, out_dir)]


def test_figure_draw_refuses_before_drawing_and_says_so_in_its_docstring(tmp_path):
    calls = []
    draw = figure_draw(study="toy", drawable=_has_w1, missing="trained cell", figures=[_figure("curves", calls)])
    with pytest.raises(NothingToDrawError, match="holds no trained cell yet"):
        draw(_saved(tmp_path / "r"))
    with pytest.raises(kit.WrongStudyError):
        figure_draw(study="other", drawable=_has_w1, missing="cell", figures=[_figure("curves", calls)])(
            _saved(tmp_path / "s", ("w1",)))
    assert calls == []
    assert "toy run" in draw.__doc__ and "curves" in draw.__doc__
    assert "NothingToDrawError: if the run holds no trained cell yet" in draw.__doc__


def test_figure_command_is_figure_main_of_the_draw(tmp_path, capsys):
    draw = figure_draw(study="toy", drawable=_has_w1, missing="trained cell", figures=[_figure("curves", [])])
    main = figure_command(draw, prog="figures.toy", description="Toy figures.")
    main([str(_saved(tmp_path / "r", ("w1",)))])
    assert capsys.readouterr().out.split() == [str(tmp_path / "r" / "figures" / name) for name in ("curves.pdf", "curves.png")]
    with pytest.raises(SystemExit) as info:
        main([str(_saved(tmp_path / "s"))])
    assert info.value.code == 2 and "holds no trained cell yet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "Toy figures." in capsys.readouterr().out
