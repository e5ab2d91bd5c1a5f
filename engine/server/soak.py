"""`python -m engine bench soak`: the engine's memory over many real generation jobs.

Starts a real engine subprocess over the installed bundles and sends it `jobs` ordinary
generate requests one after another (the demo chair, part counts cycling through `parts`,
seeds 0, 1, ...), reading the engine's resident memory from `status` after each. A process
that keeps memory flat grows by well under a megabyte per job once warm.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bridge.client import EngineClient
from engine.server.bench import MB, engine_process

WARM_UP = 5  # jobs before the baseline: bundle loading, first-use caches
TARGET_GROWTH = 100 * MB  # over 200 jobs after the warm-up (issue 18)


@dataclass
class SoakResult:
    rss: list[float]  # engine RSS in bytes after each job
    seconds: list[float]  # each job's total time as the engine measured it

    @property
    def warm(self) -> float:
        return self.rss[min(WARM_UP, len(self.rss)) - 1]

    @property
    def growth(self) -> float:
        return self.rss[-1] - self.warm

    @property
    def growth_per_job(self) -> float:
        return self.growth / max(len(self.rss) - WARM_UP, 1)


def soak(jobs: int, models: Path, image: Path, parts: tuple[int, int] = (2, 8),
         steps: int | None = None, progress: bool = True) -> SoakResult:
    """Run the soak; `parts` is the (lowest, highest) part count the jobs cycle through."""
    image_bytes = Path(image).read_bytes()
    low, high = parts
    rss, seconds = [], []
    with tempfile.TemporaryDirectory() as folder, engine_process(
            Path(folder) / "engine.log", "--models", str(models)) as address:
        with EngineClient(address) as client:
            for job in tqdm(range(jobs), desc="soak", unit="job", disable=not progress):
                result = client.generate(image_bytes, parts=low + job % (high - low + 1),
                                         seed=job, steps=steps)
                seconds.append(result.metadata["timings"]["total"])
                rss.append(client.status()["rss_bytes"])
    return SoakResult(rss, seconds)


def print_soak(jobs: int, models: Path, image: Path) -> int:
    if jobs <= WARM_UP:
        raise ValueError(f"a soak needs more than {WARM_UP} jobs (the warm-up), got {jobs}")
    result = soak(jobs, models, image)
    print(f"engine soak: {jobs} generate jobs of 2-8 parts ({image.name}), one after another")
    print(f"  RSS after the {WARM_UP}-job warm-up  {result.warm / MB:8.1f} MB")
    print(f"  RSS at the end                {result.rss[-1] / MB:8.1f} MB")
    print(f"  RSS maximum                   {max(result.rss) / MB:8.1f} MB")
    print(f"  growth after the warm-up      {result.growth / MB:8.1f} MB "
          f"({result.growth_per_job / MB:.2f} MB per job; target <= {TARGET_GROWTH / MB:.0f} MB "
          f"over 200 jobs)")
    print(f"  seconds per job (median)      {sorted(result.seconds)[len(result.seconds) // 2]:8.2f}")
    return 0
