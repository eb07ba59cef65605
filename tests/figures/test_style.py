"""figures.style.save_figure: a figure's title and layout set before it is written as PDF and PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures.style import save_figure  # noqa: E402


def _panels():
    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="y = x")
        ax.set_xlabel("a long label that tight_layout has to make room for")
    axes[0].legend()
    return fig


def _pixels(path):
    return matplotlib.image.imread(path)


def test_save_figure_writes_pdf_then_png_and_closes_the_figure(tmp_path):
    fig = _panels()
    paths = save_figure(fig, tmp_path / "sub" / "panels")
    assert paths == [tmp_path / "sub" / "panels.pdf", tmp_path / "sub" / "panels.png"]
    assert all(path.stat().st_size > 1000 for path in paths)
    assert not plt.fignum_exists(fig.number)


def test_title_and_tight_are_the_suptitle_and_tight_layout_set_before_saving(tmp_path):
    # The same figure finished by hand (suptitle, then tight_layout, then save) and by
    # save_figure must give the same pixels: the title is set before the layout.
    by_hand = _panels()
    by_hand.suptitle("title", fontsize=9)
    by_hand.tight_layout(rect=(0, 0.05, 1, 1))
    expected = save_figure(by_hand, tmp_path / "by_hand")[1]
    finished = _panels()
    written = save_figure(finished, tmp_path / "finished", title="title", title_size=9, tight={"rect": (0, 0.05, 1, 1)})[1]
    np.testing.assert_array_equal(_pixels(written), _pixels(expected))
    # Without a size the title takes the style's figure.titlesize (suptitle(fontsize=None)
    # would take font.size instead); tight=True is tight_layout() with its defaults.
    by_hand = _panels()
    by_hand.suptitle("title")
    by_hand.tight_layout()
    expected = save_figure(by_hand, tmp_path / "by_hand_default")[1]
    finished = _panels()
    written = save_figure(finished, tmp_path / "finished_default", title="title", tight=True)[1]
    np.testing.assert_array_equal(_pixels(written), _pixels(expected))
    assert finished.get_suptitle() == "title"
    assert finished._suptitle.get_fontsize() == matplotlib.font_manager.FontProperties(
        size=matplotlib.rcParams["figure.titlesize"]).get_size_in_points()


def test_no_title_and_no_tight_leave_the_figure_as_drawn(tmp_path):
    fig = _panels()
    subplot_left = fig.subplotpars.left
    save_figure(fig, tmp_path / "plain")
    assert fig.get_suptitle() == "" and fig.subplotpars.left == subplot_left
