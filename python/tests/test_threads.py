"""A `Problem` changed from one thread while another thread searches it (SOLVER.md, "From
Python"): each search answers the problem as it stood when it was called, and the change
holds for the searches after it."""
import threading

import pytest

import limpq_solver as ls
from conftest import RESNET20

# The calls that search without the GIL, each reduced to one solution.
SEARCHES = {
    "solve": lambda p: p.solve(),
    "sweep": lambda p: p.sweep(2)[-1],
    "time_solve": lambda p: p.time_solve(2)["solution"],
}


def answer(sol):
    return sol["objective"], sol["policy"]


@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_a_problem_changed_during_a_search_answers_as_it_stood(search):
    run = SEARCHES[search]
    # A thousand layers: milliseconds a search, during which the searching thread has let
    # go of the GIL and this one runs.
    p = ls.bench_problem("random1000")
    before = answer(run(p.copy()))
    after = answer(run(p.copy().size("cr:10")))
    assert before != after
    got, errors = [], []
    started = threading.Event()

    def searches():
        try:
            started.set()
            for _ in range(15):
                got.append(answer(run(p)))
        except Exception as e:  # noqa: BLE001 - any failure is the test's to report
            errors.append(e)

    t = threading.Thread(target=searches)
    t.start()
    started.wait()
    changes = 0
    try:
        # Changed over and over while the other thread searches: every change lands while
        # a search runs or between two. A change during a search used to raise
        # RuntimeError("Already borrowed") here.
        while t.is_alive():
            p.size("cr:10")
            changes += 1
    finally:
        t.join()
    assert errors == []
    assert changes > 0
    # The searches called before the first change answer the problem as it was, every
    # later one the changed problem: none sees half of a change, none fails.
    k = got.index(after) if after in got else len(got)
    assert got == [before] * k + [after] * (len(got) - k), (k, len(got))
    assert answer(run(p)) == after


def test_a_copy_and_its_original_change_apart():
    # A copy shares the problem until one of them changes (as a search's snapshot does):
    # a change to either leaves the other as it was.
    p = ls.Problem.from_file(RESNET20).bitops("w3a4")
    before = answer(p.solve())
    q = p.copy().size("cr:10")
    assert answer(p.solve()) == before
    r = p.copy()
    p.size("cr:10")
    assert answer(r.solve()) == before
    assert answer(p.solve()) == answer(q.solve()) != before
