"""shared.spacing.Spacing on a clock the test moves."""

from __future__ import annotations

from shared.spacing import Spacing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_lone_batch_and_the_two_right_after_it_do_not_wait() -> None:
    clock = Clock()
    spacing = Spacing(0.1, clock=clock)
    waits = []
    for _ in range(3):  # after a quiet spell: not a stream yet
        waits.append(spacing.wait())
        spacing.started()
        clock.now += 0.03
    assert waits == [0.0, 0.0, 0.0]
    assert abs(spacing.wait() - 0.07) < 1e-9  # three close together: a stream


def test_a_steady_stream_stays_spaced_and_a_quiet_spell_ends_it() -> None:
    clock = Clock()
    spacing = Spacing(0.1, clock=clock)
    for _ in range(3):
        spacing.started()
        clock.now += 0.01
    for _ in range(3):  # each batch waits out the spacing, then starts
        clock.now += spacing.wait() + 0.005
        spacing.started()
        clock.now += 0.01
        assert abs(spacing.wait() - 0.09) < 1e-9
    clock.now += 0.5  # quiet: more than twice the spacing since the last batch
    assert spacing.wait() == 0.0
    spacing.started()
    clock.now += 0.01
    assert spacing.wait() == 0.0


def test_a_spacing_of_zero_never_waits() -> None:
    clock = Clock()
    spacing = Spacing(0.0, clock=clock)
    for _ in range(3):
        spacing.started()
        assert spacing.wait() == 0.0
