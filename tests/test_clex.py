"""The small C lexer's view of function definitions."""

from __future__ import annotations

import pytest

from rewriter import clex

pytestmark = pytest.mark.unit

SOURCE = """\
void lock_both(spinlock_t *a,
\t       spinlock_t *b)
\t__acquires(a)
\t__acquires(b)
{
\tspin_lock(a);
\tspin_lock(b);
}

static int __init caller(int x) __attribute__((unused))
{
\tlock_both(NULL, NULL);
\treturn pte_offset_map_nolock(0, 0, 0, 0) != NULL;
}

static int unrelated(void)
{
\treturn caller(1);
}

#define NOT_A_FUNCTION(x) { (x); }
"""


def test_definitions_are_named_past_their_annotations():
    names = [name for name, _open, _close in clex._definitions(clex.tokens(SOURCE))]
    assert names == ["lock_both", "caller", "unrelated"]


def test_functions_reaching_follows_calls_from_the_callers_only():
    # unrelated() calls caller(), not the other way round: it is left out.
    assert clex.functions_reaching(SOURCE, "pte_offset_map_nolock") == {"caller", "lock_both"}


def test_keep_functions_blanks_the_others_in_place():
    kept = clex.keep_functions(SOURCE, {"caller"})
    assert len(kept) == len(SOURCE) and kept.count("\n") == SOURCE.count("\n")
    assert "spin_lock(a)" not in kept and "return caller(1)" not in kept
    assert "lock_both(NULL, NULL);" in kept
    # Lines and columns of what is kept do not move.
    for line_kept, line in zip(kept.splitlines(), SOURCE.splitlines()):
        if line_kept.strip():
            assert line_kept == line


def test_tokens_count_lines_and_directives():
    toks = clex.tokens(SOURCE)
    ret = next(t for t in toks if t.text == "pte_offset_map_nolock")
    assert ret.line == 13 and not ret.preproc
    define = [t for t in toks if t.preproc]
    assert define[0].text == "#" and define[-1].text == "}" and all(t.line == 21 for t in define)


def test_splice_puts_the_edits_of_a_narrowed_file_into_the_original():
    from rewriter.rewrite import splice

    keep = {"caller"}
    narrowed = clex.keep_functions(SOURCE, keep)
    spans = clex.function_spans(SOURCE, keep)
    assert spans == [(11, 14)]
    edited = narrowed.replace("\tlock_both(NULL, NULL);\n", "\tpmd_t pmdval;\n\n\tlock_both(NULL, NULL);\n")
    edited = edited.replace("pte_offset_map_nolock(0, 0, 0, 0)", "pte_offset_map_ro_nolock(0, 0, 0, 0)")
    out = splice(SOURCE.encode(), narrowed.encode(), edited.encode(), spans)
    assert out is not None
    want = SOURCE.replace("\tlock_both(NULL, NULL);\n", "\tpmd_t pmdval;\n\n\tlock_both(NULL, NULL);\n")
    want = want.replace("pte_offset_map_nolock(0, 0, 0, 0)", "pte_offset_map_ro_nolock(0, 0, 0, 0)")
    assert out.decode() == want  # the blanked bodies come back as they were


def test_splice_refuses_an_edit_outside_the_functions_kept():
    from rewriter.rewrite import splice

    keep = {"caller"}
    narrowed = clex.keep_functions(SOURCE, keep)
    spans = clex.function_spans(SOURCE, keep)
    edited = narrowed.replace("#define NOT_A_FUNCTION(x)", "#define NOT_A_FUNCTION(y)")
    assert splice(SOURCE.encode(), narrowed.encode(), edited.encode(), spans) is None
    edited = narrowed.replace("static int unrelated(void)\n", "static int unrelated(void)\n/* new */\n")
    assert splice(SOURCE.encode(), narrowed.encode(), edited.encode(), spans) is None


def test_definition_spans_start_at_the_declaration():
    # from the return type, past the annotations after the parameters;
    # not the comment before it
    source = "/* lock both */\n" + SOURCE
    assert clex.definition_spans(source, {"lock_both", "caller"}) == [(2, 9), (11, 15)]
    assert clex.function_spans(source, {"lock_both", "caller"}) == [(6, 9), (12, 15)]


def test_splice_takes_an_edit_of_a_declaration_in_the_definition_spans():
    """A new parameter is an edit of the function's declaration: outside the
    body, inside its definition."""
    from rewriter.rewrite import splice

    keep = {"caller"}
    narrowed = clex.keep_functions(SOURCE, keep)
    edited = narrowed.replace("caller(int x)", "caller(pmd_t *pmdvalp, int x)")
    assert splice(SOURCE.encode(), narrowed.encode(), edited.encode(), clex.function_spans(SOURCE, keep)) is None
    out = splice(SOURCE.encode(), narrowed.encode(), edited.encode(), clex.definition_spans(SOURCE, keep))
    assert out.decode() == SOURCE.replace("caller(int x)", "caller(pmd_t *pmdvalp, int x)")


def test_partial_takes_the_edits_of_the_functions_named():
    from rewriter.rewrite import partial

    spans = {name: clex.function_spans(SOURCE, {name}) for name in ("lock_both", "caller")}
    converted = (SOURCE.replace("\tspin_lock(b);\n", "\tspin_lock_nested(b, 1);\n")
                 .replace("\tlock_both(NULL, NULL);\n", "\tpmd_t pmdval;\n\n\tlock_both(NULL, NULL);\n")
                 .replace("pte_offset_map_nolock(0, 0, 0, 0)", "pte_offset_map_ro_nolock(0, 0, 0, 0)"))
    only_caller = partial(SOURCE.encode(), converted.encode(), spans, {"caller"})
    assert only_caller is not None and "spin_lock(b);" in only_caller.decode()
    assert only_caller.decode() == (SOURCE.replace("\tlock_both(NULL, NULL);\n",
                                                   "\tpmd_t pmdval;\n\n\tlock_both(NULL, NULL);\n")
                                    .replace("pte_offset_map_nolock(0, 0, 0, 0)", "pte_offset_map_ro_nolock(0, 0, 0, 0)"))
    only_lock = partial(SOURCE.encode(), converted.encode(), spans, {"lock_both"})
    assert only_lock.decode() == SOURCE.replace("\tspin_lock(b);\n", "\tspin_lock_nested(b, 1);\n")
    assert partial(SOURCE.encode(), converted.encode(), spans, set()) == SOURCE.encode()
    assert partial(SOURCE.encode(), converted.encode(), spans, {"lock_both", "caller"}) == converted.encode()


def test_partial_refuses_an_edit_outside_the_functions_named():
    from rewriter.rewrite import partial

    spans = {"caller": clex.function_spans(SOURCE, {"caller"})}
    converted = SOURCE.replace("pte_offset_map_nolock(0, 0, 0, 0)", "pte_offset_map_ro_nolock(0, 0, 0, 0)")
    # unrelated() is not among the functions of spans, nor is file scope
    assert partial(SOURCE.encode(), converted.replace("return caller(1)", "return caller(2)").encode(),
                   spans, {"caller"}) is None
    assert partial(SOURCE.encode(), ("#include <linux/mm.h>\n" + converted).encode(), spans, {"caller"}) is None
