import numpy as np
import pytest
import torch

from engine.geometry.fps import farthest_point_sample


def reference_fps(points: np.ndarray, count: int, start: int) -> list[int]:
    """Textbook FPS: recompute every point's distance to the chosen set at each step."""
    chosen = [start]
    while len(chosen) < count:
        distance = [min(float(np.sum((p - points[c]) ** 2)) for c in chosen) for p in points]
        chosen.append(int(np.argmax(distance)))
    return chosen


def cloud(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_from_first_point(seed):
    points = cloud(60, 3, seed=seed)
    got = farthest_point_sample(points, 12)
    assert got.tolist() == reference_fps(points.double().numpy(), 12, start=0)


def test_batch_items_are_independent_and_start_from_the_generator():
    points = cloud(3, 50, 3)
    got = farthest_point_sample(points, 10, generator=torch.Generator().manual_seed(7))
    starts = torch.randint(50, (3,), generator=torch.Generator().manual_seed(7))
    assert got.shape == (3, 10)
    for item, start in zip(range(3), starts.tolist()):
        assert got[item].tolist() == reference_fps(points[item].double().numpy(), 10, start)


def assert_each_choice_is_farthest(points: torch.Tensor, chosen: list[int]) -> None:
    for i in range(1, len(chosen)):
        to_set = torch.cdist(points, points[chosen[:i]]).min(dim=1).values
        assert to_set[chosen[i]] == pytest.approx(to_set.max().item(), abs=1e-6)
    assert len(set(chosen)) == len(chosen)


def test_each_choice_is_the_farthest_from_those_before():
    points = cloud(500, 3, seed=1)
    assert_each_choice_is_farthest(points, farthest_point_sample(points, 64).tolist())


def test_deterministic_for_a_seed():
    points = cloud(2, 300, 3)
    first = farthest_point_sample(points, 20, generator=torch.Generator().manual_seed(3))
    again = farthest_point_sample(points, 20, generator=torch.Generator().manual_seed(3))
    other = farthest_point_sample(points, 20, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_all_points_and_too_many():
    points = cloud(16, 3)
    assert sorted(farthest_point_sample(points, 16).tolist()) == list(range(16))
    with pytest.raises(ValueError, match="cannot choose 17 of 16"):
        farthest_point_sample(points, 17)


def test_leaves_the_thread_setting_alone():
    threads = torch.get_num_threads()
    farthest_point_sample(cloud(100, 3), 10)
    assert torch.get_num_threads() == threads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    points = cloud(2, 2000, 3)
    chosen = farthest_point_sample(points.cuda(), 64,
                                   generator=torch.Generator("cuda").manual_seed(0))
    assert chosen.is_cuda and chosen.shape == (2, 64)
    for item in range(2):
        assert_each_choice_is_farthest(points[item], chosen[item].tolist())
