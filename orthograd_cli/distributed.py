"""Several processes, one run: who this process is, and the few collectives a data-parallel step needs.

`orthograd forget --nproc N` (cli/launch.py) or `torchrun --standalone --nproc-per-node N -m orthograd_cli
forget …` start N processes with RANK, WORLD_SIZE and MASTER_ADDR/PORT in their environment; `start()` joins
them into a process group (gloo on the CPU, NCCL on CUDA). Every rank loads the same inputs and draws the same global
batches from the same seeded sampler; a step then works on this rank's contiguous share of them:

- the unlearn gradient and its loss: each rank's mean, weighted by its share and summed (all-reduce);
- the per-sample retain rows (hooks, vmap, loop) or the gram backend's layer inputs and output gradients:
  gathered from every rank in rank order (all-gather), so every rank holds what one process would have;

and the projection, the update and so the LoRA weights come out the same on every rank. Evaluation is
sharded the same way (each rank scores its share of a set, the parts are combined: metrics/evaluation.py).
Rank 0 decides the stop rule and writes the outputs; the others compute in a scratch folder and stay quiet.
`Collective.sent_bytes` counts what this rank put into collectives, for the report and
benchmarks/distributed.py.
"""

from __future__ import annotations

import functools
import os

from orthograd_cli.errors import OrthogradError


# Set by cli/launch.py in each rank it starts (the launcher's pid, which the rank watches); torchrun sets its own.
LAUNCHER_PID = "ORTHOGRAD_LAUNCHER_PID"
LAUNCHER_MARKERS = (LAUNCHER_PID, "TORCHELASTIC_RUN_ID")
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """Whether a launcher (ours or torchrun) started this process as one rank of several (or of a group of 1).
    RANK and WORLD_SIZE alone do not say so: a shell inside a torchrun or SLURM job inherits them."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ and any(m in os.environ for m in LAUNCHER_MARKERS)


def ignored_variables() -> list[str]:
    """The process-group variables in the environment of a process that was not launched as a rank."""
    return [] if launched() else [name for name in RANK_VARIABLES if name in os.environ]


def start(device: str) -> "Collective | None":
    """Join the launcher's process group; None when not launched as a rank. The job that joins passes the
    Collective down in its RunContext (context.py) and calls stop() with it."""
    if not launched():
        return None
    import datetime

    import torch
    import torch.distributed as dist

    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # a peer that dies leaves the others blocked in a collective: the launcher ends them; the timeout is the backstop
    timeout = datetime.timedelta(seconds=int(os.environ.get("ORTHOGRAD_DIST_TIMEOUT", "120")))
    dist.init_process_group(backend, timeout=timeout)
    return Collective(dist.get_rank(), dist.get_world_size(), backend)


def stop(collective: "Collective | None") -> None:
    if collective is not None:
        import torch.distributed as dist

        dist.destroy_process_group()


class PeerLost(OrthogradError):
    """A collective failed because another rank of the run is gone (killed, out of memory, its own error)."""

    exit_code = 1


def _collective(method):
    """A collective whose peer died raises PeerLost, one line, instead of gloo's or NCCL's internal error."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except RuntimeError as err:  # gloo's "Connection closed by peer" and NCCL's errors are RuntimeErrors
            import torch

            if isinstance(err, torch.OutOfMemoryError):  # this rank's own failure, not a peer's
                raise
            raise PeerLost(f"another process of this run ended, so rank {self.rank} stops too "
                           f"({type(err).__name__}); nothing was written",
                           "the first process to fail says why; rerun once it is fixed") from None
    return run


class Collective:
    def __init__(self, rank: int, world_size: int, backend: str):
        self.rank, self.world_size, self.backend = rank, world_size, backend
        self.sent_bytes = 0
        self._decided: dict = {}

    def decided_once(self, name: str, decide):
        """A value every rank must use alike (a memory plan that picks how a sum is rounded): rank 0's `decide()`,
        broadcast the first time it is asked for, then kept for the run. Each rank deciding for itself, from its
        own free memory, would let the ranks round differently and drift apart."""
        if name not in self._decided:
            self._decided[name] = self.broadcast(decide() if self.rank == 0 else None)
        return self._decided[name]

    @_collective
    def check_agreement(self, params: dict, step: int) -> None:
        """Every rank must hold the same trainable weights: compare a float64 checksum (the sum and the sum of
        squares of every tensor) across ranks, and fail loudly on all of them if any differs."""
        import torch
        import torch.distributed as dist

        from orthograd_cli.errors import NumericalError

        values = [p.detach().double() for p in params.values()]
        mine = torch.stack([sum(v.sum() for v in values), sum((v * v).sum() for v in values)])
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(everyone, mine)
        differ = [rank for rank, theirs in enumerate(everyone) if not torch.equal(theirs, everyone[0])]
        if differ:
            raise NumericalError(f"the processes' weights differ at step {step} (rank {differ[0]} against rank 0): "
                                 "they no longer take the same steps", "rerun with --nproc 1 and report it")

    def shard(self, index):
        """This rank's contiguous share of a global batch's indices (rank order = batch order)."""
        return index.tensor_split(self.world_size)[self.rank]

    @_collective
    def average(self, grads: dict, loss, count: int):
        """(Σ_r n_r·g_r / Σ_r n_r, the same for the loss): the global batch's mean gradient and loss from each
        rank's mean over its n_r samples, in one all-reduce."""
        import torch
        import torch.distributed as dist

        names = list(grads)
        reference = grads[names[0]]
        parts = [(grads[n].reshape(-1) * count).to(torch.float64) for n in names]
        buffer = torch.cat([*parts, (loss.detach().reshape(1) * count).to(torch.float64),
                            torch.tensor([float(count)], dtype=torch.float64, device=reference.device)])
        self.sent_bytes += buffer.numel() * buffer.element_size()
        dist.all_reduce(buffer)
        total = buffer[-1]
        pieces = (buffer[:-1] / total).split([g.numel() for g in grads.values()] + [1])
        averaged = {n: piece.view_as(grads[n]).to(grads[n].dtype) for n, piece in zip(names, pieces)}
        return averaged, pieces[-1][0].to(loss.dtype)

    @_collective
    def gather(self, tensor):
        """Every rank's `tensor` concatenated along dim 0 in rank order. Shapes may differ past dim 0 (padded
        speech batches): each is zero-padded to the largest for the exchange and the result keeps the
        largest shape, which the callers' padding already means (zero inputs and zero output gradients)."""
        import torch
        import torch.distributed as dist

        shape = torch.tensor(tensor.shape, dtype=torch.long, device=tensor.device)
        shapes = [torch.empty_like(shape) for _ in range(self.world_size)]
        dist.all_gather(shapes, shape)
        shapes = [tuple(s.tolist()) for s in shapes]  # the one read-back of a gather (on a GPU: one wait)
        largest = [max(s[d] for s in shapes) for d in range(tensor.dim())]
        padded = torch.zeros((largest[0], *largest[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[tuple(slice(0, n) for n in tensor.shape)] = tensor
        received = [torch.empty_like(padded) for _ in range(self.world_size)]
        self.sent_bytes += padded.numel() * padded.element_size()
        dist.all_gather(received, padded.contiguous())
        return torch.cat([part[:s[0]] for part, s in zip(received, shapes)])

    def gather_rows(self, rows: dict, losses):
        """The per-sample rows {name: (k_r, *shape)} and losses (k_r,) of every rank, in one all-gather."""
        import torch

        names = list(rows)
        count = losses.shape[0]
        flat = torch.cat([rows[n].reshape(count, -1) for n in names] + [losses.detach().reshape(count, 1).to(
            rows[names[0]].dtype)], dim=1)
        gathered = self.gather(flat)
        pieces = gathered.split([rows[n][0].numel() for n in names] + [1], dim=1)
        return ({n: piece.reshape(-1, *rows[n].shape[1:]) for n, piece in zip(names, pieces)},
                pieces[-1][:, 0].to(losses.dtype))

    @_collective
    def gather_objects(self, value) -> list:
        """Every rank's `value` (a picklable Python value: a set's scored part), in rank order."""
        import torch.distributed as dist

        received = [None] * self.world_size
        dist.all_gather_object(received, value)
        return received

    @_collective
    def broadcast(self, value):
        """Rank 0's `value` (any picklable Python value: a stop-rule row) on every rank."""
        import torch.distributed as dist

        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]
