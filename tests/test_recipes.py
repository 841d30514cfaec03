"""The recipe boundary: a second recipe, for a made-up kernel-style API
(tests/fixtures/recipes/widget_map_nolock, run on tests/fixtures/widget),
goes through scan, plan, diff and series with rewriter's engine as it is;
and the recipe folder's own checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES_DIR, git, make_git_repo
from harness import assert_refused, run

from rewriter import recipe


RECIPES = FIXTURES_DIR / "recipes"
WIDGET_TREE = FIXTURES_DIR / "widget"
ENV = {"REWRITER_RECIPES": str(RECIPES)}


@pytest.fixture
def widget_repo(tmp_path) -> Path:
    repo = make_git_repo(WIDGET_TREE, tmp_path / "widget")
    git(repo, "config", "user.name", "Widget Tester")
    git(repo, "config", "user.email", "widget-tester@example.org")
    return repo


def test_recipes_lists_the_builtin_one_and_those_on_the_path(tmp_path):
    alone = run(["recipes"], tmp_path, env={"REWRITER_RECIPES": None})
    assert alone.code == 0, alone.describe()
    assert [l.split()[0] for l in alone.stdout.splitlines() if not l.startswith(" ")] == ["pte_offset_map_nolock"]
    both = run(["recipes"], tmp_path, env=ENV)
    assert both.code == 0, both.describe()
    names = [l.split()[0] for l in both.stdout.splitlines() if not l.startswith(" ")]
    assert names == ["pte_offset_map_nolock", "widget_map_nolock"]
    assert "widget_map_nolock() -> widget_map_read_nolock(), widget_map_write_nolock()" in both.stdout


def test_widget_scan_decides_each_call_by_the_rule(widget_repo, tmp_path):
    res = run(["scan", "--tree", widget_repo, "--recipe", "widget_map_nolock", "--format", "json"], tmp_path,
              env=ENV)
    assert res.code == 0, res.describe()
    sites = {s["function"]: s for s in json.loads(res.stdout)["sites"]}
    got = {f: (s["verdict"], s["recheck"], s["basis"]) for f, s in sites.items()}
    assert got == {
        "widget_peek": ("ro", None, "reads"),
        "widget_poke": ("rw", "pmd_same", "pmd_same"),  # widget_set() under the lock, nothing guards it
        "widget_swap": ("rw", "dummy", "pte_same"),  # widget_same() on a slot that cannot be empty
        "widget_fill_one": ("rw", "dummy", "mmap_write"),  # its only caller write-locks the device
    }
    assert sites["widget_fill_one"]["write_locked_by"] == [{"function": "widget_fill",
                                                            "file": "drivers/widget/widget-fill.c"}]
    swap_evidence = " ".join(e["text"] for e in sites["widget_swap"]["evidence"])
    assert "orig cannot be none after this test" in swap_evidence
    # The texts speak of the recipe's API only (recheck and basis are the
    # engine's vocabulary, the same for every recipe).
    texts = " ".join(t for s in sites.values() for t in [*s["reasons"], *(e["text"] for e in s["evidence"])])
    assert "the device lock for write (widget_fill() in drivers/widget/widget-fill.c)" in texts
    for word in ("pte", "pmd", "mmap"):
        assert word not in texts.lower(), word


def test_widget_diff_uses_the_recipes_names_types_and_texts(widget_repo, tmp_path):
    res = run(["diff", "--tree", widget_repo, "--recipe", "widget_map_nolock", "--color", "never"], tmp_path,
              env=ENV)
    assert res.code == 0, res.describe()
    diff = res.stdout
    assert ("-\tslot = widget_map_nolock(wd, par, idx, &lock);\n"
            "+\tslot = widget_map_read_nolock(wd, par, idx, &lock);\n \tif (!slot)\n \t\treturn -EAGAIN;\n"
            " \tval = wslot_val(widget_get(slot));") in diff  # peek: renamed, nothing else
    # poke: the inserted local, the new argument before the lock, the recheck with the recipe's release
    assert "+\twpar_t parval;" in diff
    assert "+\tslot = widget_map_write_nolock(wd, par, idx, &parval, &lock);" in diff
    assert ("+\tif (unlikely(!wpar_same(parval, wpar_get_lockless(par))))"
            " {\n+\t\twidget_unmap_unlock(slot, lock);\n+\t\treturn -EAGAIN;\n+\t}") in diff
    # the two dummies, each with the recipe's reason as its comment
    assert "+\twpar_t dummy_parval;" in diff
    assert "+\t * widget_same() on a slot that is not empty fails if the table was" in diff
    assert "(widget_fill()), so the" in diff
    # the helpers in the recipe's files, and no trace of page tables
    for path in ("include/linux/widget.h", "lib/widget.c", "Documentation/widget.rst"):
        assert f"+++ b/{path}" in diff
    assert "wslot_t *widget_map_write_nolock(struct widget_dev *wd, wpar_t *par," in diff
    for word in ("pte", "pmd", "mmap_lock", "PTE", "PMD"):
        assert word not in diff, word


def test_widget_series_is_written_by_the_unchanged_engine(widget_repo, tmp_path):
    out = tmp_path / "out"
    res = run(["series", "--tree", widget_repo, "--recipe", "widget_map_nolock", "-o", out], tmp_path, env=ENV)
    assert res.code == 0, res.describe()
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 7 and names[0] == "0000-cover-letter.patch", names
    subjects = [next(l for l in (out / n).read_text().splitlines() if l.startswith("Subject:")) for n in names]
    assert subjects[1].endswith("add widget_map_{read|write}_nolock()"), subjects
    assert subjects[-1].endswith("remove widget_map_nolock()"), subjects
    assert "widget/split-read-write-v1" in git(widget_repo, "branch", "--list", "widget/*")
    cover = (out / names[0]).read_text()
    assert "widget_fill_one()  rw  device write-locked" in cover
    assert "rewriter series --recipe widget_map_nolock" in cover
    for word in ("pte_", "pmd_", "mmap_lock"):
        assert word not in cover, word


def test_recipe_by_path_and_plan_records_it(widget_repo, tmp_path):
    folder = tmp_path / "elsewhere" / "my-widget"
    shutil.copytree(RECIPES / "widget_map_nolock", folder)
    plan = run(["plan", "--tree", widget_repo, "--recipe", folder], tmp_path, env={"REWRITER_RECIPES": None})
    assert plan.code == 0, plan.describe()
    assert 'recipe = "widget_map_nolock"' in plan.stdout
    written = tmp_path / "widget.plan.toml"
    written.write_text(plan.stdout)
    # a plan brings its recipe (found by name on REWRITER_RECIPES) ...
    followed = run(["diff", "--tree", widget_repo, "--plan", written], tmp_path, env=ENV)
    assert followed.code == 0 and "widget_map_write_nolock" in followed.stdout, followed.describe()
    # ... and another recipe refuses it, in one line, before any work
    other = run(["diff", "--tree", widget_repo, "--plan", written, "--recipe", "pte_offset_map_nolock"], tmp_path,
                env=ENV)
    assert_refused(other, 3, "widget_map_nolock", "--recipe")


def test_unknown_and_broken_recipes_are_refused_in_one_line(widget_repo, tmp_path):
    assert_refused(run(["scan", "--tree", widget_repo, "--recipe", "no_such"], tmp_path, env=ENV), 3,
                   "no such recipe", "rewriter recipes")
    broken = tmp_path / "broken"
    shutil.copytree(RECIPES / "widget_map_nolock", broken)
    text = (broken / "recipe.toml").read_text()
    (broken / "recipe.toml").write_text(text.replace('[release]\nunmap_unlock = "widget_unmap_unlock"\n', "[release]\n"))
    assert_refused(run(["scan", "--tree", widget_repo, "--recipe", broken], tmp_path, env=ENV), 3,
                   "recipe.toml", "unmap_unlock")
    assert_refused(run(["scan", "--tree", widget_repo, "--recipe", tmp_path / "nothing"], tmp_path, env=ENV), 3,
                   "no recipe.toml")


def test_boot_check_is_refused_for_a_recipe_without_one(widget_repo, tmp_path):
    res = run(["check", "--tree", widget_repo, "--recipe", "widget_map_nolock", "--boot"], tmp_path, env=ENV)
    assert_refused(res, 3, "--boot", "widget_map_nolock", "without --boot")


@pytest.mark.unit
def test_names_and_branch_follow_the_pattern():
    pte = recipe.find(None)
    assert pte.default_names == recipe.Names("pte_offset_map_readonly_nolock", "pte_offset_map_maywrite_nolock")
    assert pte.names("ro,rw") == recipe.Names("pte_offset_map_ro_nolock", "pte_offset_map_rw_nolock")
    assert pte.names_option(pte.names("ro,rw")) == "ro,rw" and pte.names_option(pte.default_names) == ""
    assert pte.branch_name(pte.names("ro,rw"), 2) == "rewriter/pte-map-ro-rw-v2"
    widget = recipe.load(RECIPES / "widget_map_nolock")
    assert widget.branch_name(widget.names("shared,excl"), 1) == "widget/split-shared-excl-v1"
    assert widget.api.writers == {"widget_set": 0, "widget_clear": 0}
    assert widget.digest != pte.digest
    assert pte.boot and not widget.boot
