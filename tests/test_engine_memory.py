"""The engine's memory over real generation jobs (issue 18): the shipped bundle and library,
the demo chair, a real engine subprocess. Without the heap trim after each job this grows
~40 MB per job (glibc's heap fragments); with it, well under a megabyte."""

from engine.demo import DEMO_IMAGE
from engine.pipelines.registry import DEFAULT_MODELS
from engine.server.soak import WARM_UP, soak

JOBS = 15


def test_engine_memory_stays_flat_over_generation_jobs():
    result = soak(JOBS, DEFAULT_MODELS, DEMO_IMAGE, parts=(2, 5), steps=2, progress=False)
    assert len(result.rss) == JOBS and result.warm == result.rss[WARM_UP - 1]
    assert result.growth_per_job < 2e6, [round(r / 1e6) for r in result.rss]
