"""HookPoints: identity without hooks, exact/predicate matching, replacement, removal on exit."""

from __future__ import annotations

import pytest
import torch

from icgd.models.hooks import HookPoints, caching_hook, names_filter_to_predicate


def test_identity_without_hooks():
    hp = HookPoints()
    x = torch.randn(3)
    assert hp("a", x) is x
    assert not hp.active("a")


def test_exact_and_predicate_matching_and_order():
    hp = HookPoints()
    seen: list[tuple[str, str]] = []
    x = torch.ones(2)
    hooks = [
        ("a.1", lambda t, name: seen.append(("exact", name))),
        (lambda name: name.startswith("a."), lambda t, name: t * 2),
        (lambda name: name.startswith("a."), lambda t, name: t + 1),
    ]
    with hp.attach(hooks):
        assert hp.active("a.1") and hp.active("a.7") and not hp.active("b.1")
        torch.testing.assert_close(hp("a.1", x), torch.full((2,), 3.0))  # (1*2)+1, in order
        assert hp("b.1", x) is x
    assert seen == [("exact", "a.1")]
    assert len(hp) == 0 and not hp.active("a.1")


def test_hooks_removed_on_exception_and_nesting():
    hp = HookPoints()

    def fn(t, name):
        return t + 1

    with pytest.raises(RuntimeError, match="boom"):
        with hp.attach([("x", fn)]):
            with hp.attach([("x", fn)]):
                assert len(hp) == 2
                raise RuntimeError("boom")
    assert len(hp) == 0
    with hp.attach([("x", fn)]):
        with hp.attach([("x", fn)]):
            pass
        assert len(hp) == 1  # the inner exit removed only its own entry
    assert len(hp) == 0


def test_attach_rejects_bad_pairs():
    hp = HookPoints()
    with pytest.raises(TypeError):
        with hp.attach([("x", 3)]):  # type: ignore[list-item]
            pass
    assert len(hp) == 0


def test_caching_hook_detaches():
    cache: dict[str, torch.Tensor] = {}
    hp = HookPoints()
    x = torch.randn(3, requires_grad=True)
    with hp.attach([(lambda n: True, caching_hook(cache))]):
        out = hp("y", x * 2)
    assert out.requires_grad and not cache["y"].requires_grad
    torch.testing.assert_close(cache["y"], (x * 2).detach())


@pytest.mark.parametrize(
    ("names_filter", "expected"),
    [
        (None, {"a", "b", "c"}),
        ("a", {"a"}),
        (["a", "c"], {"a", "c"}),
        (lambda n: n != "b", {"a", "c"}),
    ],
)
def test_names_filter(names_filter, expected):
    pred = names_filter_to_predicate(names_filter)
    assert {n for n in "abc" if pred(n)} == expected
