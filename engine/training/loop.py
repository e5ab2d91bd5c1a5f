"""The training loop shared by the VAEs and the DiTs: plain and short, in nanoGPT's spirit.

AdamW (weight decay on matrices only), linear warm-up then cosine decay, gradient clipping,
an EMA of the weights (what gets shipped), periodic validation of the EMA weights, a JSON
log and loss-curve PNG, and a checkpoint in the run folder to resume from.

Randomness is a pure function of (seed, step): every step draws its batch from
`np.random.default_rng([seed, step])` and reseeds torch's global generator (posterior
samples, query subsets), so a resumed run repeats an uninterrupted one exactly (on the same
device) and the checkpoint needs no RNG state beyond the step. SIGINT / SIGTERM stop the
run at the end of the current step with a checkpoint written.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from engine.files import write_atomic
from engine.device import resolve_device
from engine.training.curves import write_curves, write_log
from engine.training.ema import EMA

CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_STREAM, VAL_STREAM = 0, 1

Batch = dict[str, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], dict[str, torch.Tensor]]  # must contain "loss"
BatchFn = Callable[[np.random.Generator], Batch]


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 8
    lr: float = 5e-4
    min_lr_fraction: float = 0.1  # the cosine ends at lr · this
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 10  # train losses are averaged over this many steps
    val_every: int = 250
    val_batches: int = 4
    checkpoint_every: int = 250
    seed: int = 0


@dataclass
class TrainResult:
    ema: nn.Module  # the EMA weights (what to save)
    step: int  # steps done
    finished: bool  # False when stopped early by a signal
    log: dict = field(default_factory=dict)

    @property
    def val_summary(self) -> str:
        """The last validation (EMA weights) as "name value, ..."; empty before any."""
        return format_losses(self.log["val"][-1] if self.log["val"] else {})


def format_losses(row: dict) -> str:
    """A log row as "name value, ..." (its step left out)."""
    return ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step")


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to `lr`, then cosine down to `lr · min_lr_fraction` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.lr * config.min_lr_fraction
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """Decay matrices (linear weights); leave biases and norm gains alone."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def step_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator for one step (or one validation batch); also reseeds torch from it."""
    sequence = np.random.SeedSequence([seed, stream, index])
    torch.manual_seed(int(sequence.generate_state(1, np.uint64)[0] % (2**63)))
    return np.random.default_rng(sequence)


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def validate(model: nn.Module, compute_losses: LossFn, val_batch: BatchFn, config: TrainConfig,
             device: torch.device) -> dict[str, float]:
    """Mean losses over the same `val_batches` batches every time (comparable points)."""
    totals: dict[str, float] = {}
    for i in range(config.val_batches):
        losses = compute_losses(model, to_device(val_batch(step_rng(config.seed, VAL_STREAM, i)), device))
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + float(value) / config.val_batches
    return totals


class StopRequest:
    """SIGINT / SIGTERM set a flag (checked between steps) instead of killing the process."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def save_checkpoint(path: Path, model: nn.Module, ema: EMA, optimizer, step: int,
                    config: TrainConfig, log: dict) -> None:
    state = {"model": model.state_dict(), "ema": ema.state_dict(),
             "optimizer": optimizer.state_dict(), "step": step, "config": asdict(config), "log": log}
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, model: nn.Module, ema: EMA, optimizer,
                    config: TrainConfig) -> tuple[int, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    # --steps may change on resume (a run cut short or lengthened to fit a session); the
    # learning-rate schedule then follows the new total. Anything else must match.
    saved = TrainConfig(**{**state["config"], "betas": tuple(state["config"]["betas"]),
                           "steps": config.steps})
    if saved != config:
        changed = {k: (v, getattr(config, k)) for k, v in asdict(saved).items()
                   if getattr(config, k) != v and not (k == "betas" and tuple(v) == config.betas)}
        raise ValueError(f"{path} was trained with another config (saved, now): {changed}")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    return state["step"], state["log"]


def train(model: nn.Module, compute_losses: LossFn, train_batch: BatchFn, val_batch: BatchFn,
          config: TrainConfig, run_dir: str | Path, device: str = "auto", resume: bool = False,
          progress: bool = True, title: str = "") -> TrainResult:
    """Train `model` for `config.steps` steps; `train_batch(rng)` / `val_batch(rng)` give
    batches of CPU tensors. With `resume`, continue from `run_dir`'s checkpoint."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / CHECKPOINT_NAME
    if checkpoint.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; resume it or pick another folder")
    device = resolve_device(device)
    model.to(device).train()
    ema = EMA(model, config.ema_decay)
    optimizer = make_optimizer(model, config)
    step, log = 0, {"train": [], "val": []}
    if resume and checkpoint.exists():
        step, log = load_checkpoint(checkpoint, model, ema, optimizer, config)

    # Wall time spent training, summed over resumed sessions (for model cards).
    seconds_before, started = log.get("seconds", 0.0), time.perf_counter()
    window: dict[str, float] = {}
    window_steps = 0
    bar = tqdm(total=config.steps, initial=step, desc=title or "train", disable=not progress,
               dynamic_ncols=True)
    with StopRequest() as stop:
        while step < config.steps and not stop.requested:
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = to_device(train_batch(step_rng(config.seed, TRAIN_STREAM, step)), device)
            losses = compute_losses(model, batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            ema.update(model)
            step += 1

            for key, value in {**losses, "grad_norm": grad_norm}.items():
                window[key] = window.get(key, 0.0) + float(value.detach())
            window_steps += 1  # counted, not derived from `step`: a resumed run starts mid-window
            if step % config.log_every == 0 or step == config.steps:
                log["train"].append({"step": step, "lr": lr,
                                     **{k: v / window_steps for k, v in window.items()}})
                window, window_steps = {}, 0
                bar.set_postfix(loss=f"{log['train'][-1]['loss']:.4f}", lr=f"{lr:.2e}")
            if step % config.val_every == 0 or step == config.steps:
                log["val"].append({"step": step, **validate(ema.shadow, compute_losses, val_batch,
                                                            config, device)})
                model.train()
                bar.write(f"step {step}: val {format_losses(log['val'][-1])}")
            if step % config.checkpoint_every == 0 or step == config.steps or stop.requested:
                log["seconds"] = seconds_before + time.perf_counter() - started
                save_checkpoint(checkpoint, model, ema, optimizer, step, config, log)
                write_log(run_dir, log)
                if log["train"]:
                    write_curves(run_dir, log, title)
            bar.update()
    bar.close()
    return TrainResult(ema.shadow, step, step >= config.steps, log)
