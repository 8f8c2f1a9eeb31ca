"""A step never waits for the device: no tensor is read back to Python inside the unlearning loop except at
stop-rule checks (which evaluate the model and read the step diagnostics kept since the last check).

On a GPU every such read (`.item()`, `float()`, `int()`, `bool()`, an `if` on a tensor) stalls the host until the
device has finished. The CPU has no such stall to measure, so this test counts the reads themselves: every Python
call of those methods on a tensor is intercepted during a real `orthograd forget` run, and one made inside
`run_unlearning` but outside a check is a failure, reported with the line that made it.
"""

from __future__ import annotations

import sys

import pytest
import torch

from tests.conftest import FORGET_CLASS

READS = ("item", "__float__", "__int__", "__bool__", "__index__")
ALLOWED = {("loop.py", "check"), ("loop.py", "read_steps"), ("stop.py", "check")}


def reads_outside_checks(monkeypatch) -> list[str]:
    """Patch torch.Tensor's read-back methods to record each call made within the loop's steps."""
    seen: list[str] = []

    def where() -> str | None:
        frame, inside_loop, caller = sys._getframe(2), False, None
        while frame is not None:
            code = frame.f_code
            place = (code.co_filename.rsplit("/", 1)[-1], code.co_name)
            if place in ALLOWED:
                return None
            if place == ("loop.py", "run_unlearning"):
                inside_loop = True
            caller = caller or f"{code.co_filename}:{frame.f_lineno} ({code.co_name})"
            frame = frame.f_back
        return caller if inside_loop else None

    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            place = where()
            if place is not None:
                seen.append(f"{_name} at {place}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return seen


@pytest.mark.parametrize("settings", [
    [],  # the default: per_tensor scope, hooks backend, cholesky solver
    ["method.projection.scope=global"],
    ["method.per_sample.backend=gram", "method.projection.scope=global"],
    ["method.name=neggrad_plus"],
    ["method.name=gdr_gma", "method.alpha=null"],  # the recipe's α is OrthoGrad's; GDR-GMA has none
], ids=["default", "global", "gram-backend", "neggrad_plus", "gdr_gma"])
def test_a_step_reads_nothing_back_from_the_device(monkeypatch, cli, tmp_path, trained_model, digits, settings):
    folder = digits / f"class{FORGET_CLASS}"
    seen = reads_outside_checks(monkeypatch)
    overrides = [arg for setting in [*settings, "method.max_steps=7", "method.stop.check_every=3"]
                 for arg in ("--set", setting)]
    result = cli("forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--recipe", "resnet18_digits_class", "--out", tmp_path / "run", "--quiet", *overrides,
                 "--require", "!target_reached")
    monkeypatch.undo()
    assert result.code == 0, result.err
    assert seen == [], f"{len(seen)} reads inside steps, first: {seen[:3]}"


def test_the_counter_sees_a_read_inside_a_step(monkeypatch, cli, tmp_path, trained_model, digits):
    """The interception works: a method that reads its loss with float() inside the step is caught."""
    from orthograd_cli.methods import neggrad_plus

    original = neggrad_plus.neggrad_plus_direction

    def reading(*args):
        direction = original(*args)
        direction.unlearn_loss = float(direction.unlearn_loss)  # what the loop used to do every step
        return direction

    monkeypatch.setattr(neggrad_plus, "neggrad_plus_direction", reading)  # make() returns it by name
    folder = digits / f"class{FORGET_CLASS}"
    seen = reads_outside_checks(monkeypatch)
    result = cli("forget", trained_model, "--forget", folder / "forget.csv", "--retain", folder / "retain.csv",
                 "--recipe", "resnet18_digits_class", "--out", tmp_path / "run", "--quiet", "--set",
                 "method.name=neggrad_plus", "--set", "method.max_steps=4", "--set", "method.stop.check_every=3",
                 "--require", "!target_reached")
    monkeypatch.undo()
    assert result.code == 0, result.err
    assert any("__float__" in place and "reading" in place for place in seen), seen


def test_reproducibility_notices_a_kernel_without_a_deterministic_version():
    """The report's `deterministic` comes from here: on while the block runs, off again after, and false once a
    kernel PyTorch lists as nondeterministic ran (put_ without accumulation, on any device)."""
    from orthograd_cli.runtime import Reproducibility

    before = torch.are_deterministic_algorithms_enabled()
    with Reproducibility(True) as clean:
        assert torch.are_deterministic_algorithms_enabled()
        torch.randn(4, 4) @ torch.randn(4, 4)
    with pytest.warns(UserWarning, match="deterministic"):  # passed on to the caller, not swallowed
        with Reproducibility(True) as noticed:
            torch.zeros(5).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]), accumulate=False)
    with Reproducibility(False) as off:
        pass
    assert (clean.deterministic, noticed.deterministic, off.deterministic) == (True, False, False)
    assert torch.are_deterministic_algorithms_enabled() == before
