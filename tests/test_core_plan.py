"""plan.load() in-process, against the scan replayed from the recorded
fixture facts: the plan 'rewriter plan' writes reads back as the scan
decided it, a settled one settles the reviews, and a plan that does not
fit is refused with its file and line."""

from __future__ import annotations

import functools
import re

import pytest

import recorded
from harness import RELOCK_BODIES, UNPLACEABLE, set_in_plan, settle_reviews
from rewriter import plan
from rewriter.errors import InputError

pytestmark = pytest.mark.unit

FIRST = "arch/x86/mm/fixture_young.c:fixture_x86_young_loop:0"  # rw + pmd_same
RO = "mm/fixture_basic.c:fixture_pte_young_ro:0"
DUMMY = "mm/fixture_guard_present.c:fixture_gp_wrprotect:0"
RELOCK = "mm/fixture_relock.c:fixture_relock_collapse:0"


def fixture_scan():
    return recorded.scanned("fixture")


@functools.lru_cache(maxsize=None)
def written() -> str:
    """The plan text 'rewriter plan' writes for the scan."""
    return plan.dump(plan.from_scan(fixture_scan()), fixture_scan())


def load(tmp_path, text: str) -> plan.Plan:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return plan.load(str(path), fixture_scan())


def refusal(tmp_path, text: str) -> str:
    with pytest.raises(InputError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(tmp_path / "plan.toml"), "plan.toml")


def header_line(text: str, key: str) -> int:
    """The line of the [[call]] that names key (file:function:index)."""
    file, function, index = key.split(":")
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line == "[[call]]" and lines[n + 1:n + 4] == [f'file = "{file}"', f'function = "{function}"',
                                                          f"index = {index}"]:
            return n + 1
    raise AssertionError(key)


def test_the_written_plan_reads_back_as_the_scan_decided(tmp_path):
    loaded = load(tmp_path, written())
    assert loaded.entries == plan.from_scan(fixture_scan()).entries
    assert loaded.made_at == fixture_scan().rev
    entry = loaded.entry(next(s for s in fixture_scan().sites if s.key == DUMMY))
    assert (entry.verdict, entry.recheck, entry.decision) == ("rw", "dummy", None)
    assert entry.reason.startswith("the pte_same() check after taking the lock compares an entry that is not none")


def test_reviews_are_unsettled_until_the_plan_decides(tmp_path):
    reviews = {s.key for s in fixture_scan().sites if s.verdict.review}
    assert RELOCK in reviews and UNPLACEABLE in reviews
    assert {s.key for s in plan.unsettled(load(tmp_path, written()), fixture_scan())} == reviews
    settled = load(tmp_path, settle_reviews(written()))
    assert plan.unsettled(settled, fixture_scan()) == []
    entry = next(e for e in settled.entries if e.key == RELOCK)
    assert entry.decision == "convert"
    assert entry.on_recheck_fail == ("", "spin_unlock(ptl);\nreturn -EAGAIN;")  # RELOCK_BODIES
    assert (entry.body_for(0), entry.body_for(1), entry.body_for(2)) == (None, "spin_unlock(ptl);\nreturn -EAGAIN;",
                                                                         None)
    assert RELOCK in RELOCK_BODIES


def test_keep_leaves_the_call_and_the_empty_reason_is_the_scans(tmp_path):
    text = set_in_plan(written(), UNPLACEABLE, "decision", '"keep"')
    text = set_in_plan(text, FIRST, "reason", '""')
    loaded = load(tmp_path, text)
    assert plan.kept(loaded) == {UNPLACEABLE}
    first = next(s for s in fixture_scan().sites if s.key == FIRST)
    assert loaded.entry(first).reason == plan.default_reason(first, recorded.RECIPE)


def test_a_verdict_the_plan_overrides(tmp_path):
    text = set_in_plan(set_in_plan(written(), RO, "verdict", '"rw"'), RO, "recheck", '"dummy"')
    entry = next(e for e in load(tmp_path, text).entries if e.key == RO)
    assert (entry.verdict, entry.recheck) == ("rw", "dummy")


# (what to change, the refusal after "plan.toml:LINE: "); LINE is the
# [[call]] of the key changed.
AT_CALL = {
    "unknown verdict": (FIRST, "verdict", '"maybe"', "unknown verdict 'maybe'; use \"ro\" or \"rw\""),
    "rw without a recheck": (FIRST, "recheck", '""', "a rw call needs recheck = \"pmd_same\" or \"dummy\", not None"),
    "ro with a recheck": (RO, "recheck", '"dummy"', "a ro call takes no recheck (found 'dummy'); set recheck = \"\""),
    "body on a dummy": (DUMMY, "on_recheck_fail", '"return 0;"',
                        "on_recheck_fail only applies to rw calls with recheck = \"pmd_same\""),
    "body not text": (FIRST, "on_recheck_fail", "3", "on_recheck_fail must be a string, or a list of strings"),
    "unknown decision": (RELOCK, "decision", '"later"', "unknown decision 'later'; use \"convert\""),
    "unknown key": (FIRST, "colour", '"red"', "unknown key 'colour'; the keys are decision, file, function"),
    "index not a number": (FIRST, "index", '"0"', "index must be a whole number from 0, not '0'"),
    "a negative index": (FIRST, "index", "-1", "index must be a whole number from 0, not -1"),
    "reason not text": (FIRST, "reason", "1", "reason must be a string in double quotes, not 1"),
    "a call that is not there": (FIRST, "index", "7", "the plan names arch/x86/mm/fixture_young.c:"
                                                      "fixture_x86_young_loop:7, which is not a call at {rev}"),
}


@pytest.mark.parametrize("case", sorted(AT_CALL))
def test_a_bad_entry_is_refused_at_its_line(tmp_path, case):
    key, field, value, message = AT_CALL[case]
    text = set_in_plan(written(), key, field, value)
    got = refusal(tmp_path, text)
    message = message.format(rev=recorded.scanned("fixture").rev[:12])  # the recorded commit
    assert got.startswith(f"plan.toml:{header_line(written(), key)}: {message}"), got


def test_an_entry_named_twice(tmp_path):
    block = written().split("\n[[call]]\n")[1]
    text = written() + "\n[[call]]\n" + block
    got = refusal(tmp_path, text)
    last = text.splitlines().index("[[call]]", len(written().splitlines())) + 1
    assert got == f"plan.toml:{last}: {FIRST} is named twice; keep one entry per call"


def test_a_missing_entry_makes_the_plan_stale(tmp_path):
    blocks = written().split("\n[[call]]\n")
    text = "\n[[call]]\n".join(b for b in blocks if 'function = "fixture_pte_young_ro"' not in b)
    assert refusal(tmp_path, text).startswith("plan.toml: the plan has no entry for the call at "
                                              "mm/fixture_basic.c:22 in fixture_pte_young_ro() (" + RO + ")")


@pytest.mark.parametrize("change, pattern", [
    (lambda t: t.replace("version = 1", "version = 2"), r"plan.toml: plan version 2 is not one this rewriter reads"),
    (lambda t: t.replace('function = "pte_offset_map_nolock"', 'function = "pte_offset_map"', 1),
     r"plan.toml: the plan is for pte_offset_map\(\), not pte_offset_map_nolock\(\)"),
    # a table, then an array of tables of the same name
    (lambda t: t.replace("\n[[call]]\n", "\n[call]\n", 1), r"plan.toml:\d+: not a valid TOML plan \(Cannot overwrite"),
    (lambda t: t.replace('rev = "', "rev = 12 #", 1), r"plan.toml: rev must be a string in double quotes, not 12"),
])
def test_a_bad_plan_is_refused(tmp_path, change, pattern):
    got = refusal(tmp_path, change(written()))
    assert re.match(pattern, got), got


def test_not_toml_names_the_line(tmp_path):
    text = written().replace('\nverdict = "ro"\n', '\nverdict = ro\n', 1)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if l == "verdict = ro")
    got = refusal(tmp_path, text)
    assert got.startswith(f"plan.toml:{line}: not a valid TOML plan"), got


def test_a_plan_from_another_rev_must_name_the_same_calls(tmp_path):
    """The "# line N: CALL" comment is the call at the plan's rev: another
    call in its place (same key) is refused, the same call is taken."""
    other = written().replace(f'rev = "{fixture_scan().rev}"', 'rev = "' + "1" * 40 + '"')
    assert load(tmp_path, other).made_at == "1" * 40
    moved = other.replace("# line 14: pte_offset_map_nolock(vma->vm_mm, pmd, addr, &ptl)",
                          "# line 14: pte_offset_map_nolock(mm, pmd, addr, &ptl)")
    got = refusal(tmp_path, moved)
    assert re.match(rf"plan.toml:{header_line(written(), FIRST)}: {FIRST} was 'pte_offset_map_nolock\(mm, pmd, "
                    rf"addr, &ptl\)' at line 14, but the call there now is", got), got


def test_an_unreadable_plan(tmp_path):
    with pytest.raises(InputError, match=r"cannot read the plan .*; write one with 'rewriter plan -o "):
        plan.load(str(tmp_path / "missing.toml"), fixture_scan())
