"""The whole training step replayed as one CUDA graph, used only where it computes what eager computes.

At batch 32 the seed's step is about 70 small kernels and 0.05 ms of H100 math: eager PyTorch spends its
time launching them. A CUDA graph records the step once (transform-to-loss forward, backward, optimizer,
the batch's loss and metric values) and replays it with one launch. Replay runs the very same kernels on
the same memory, so it must give the same numbers; `GraphedStep` proves that for this run before using it:

1. the first batch of a shape runs eagerly (the reference), and the state before and after is kept;
2. warm-up on a side stream, then capture, each followed by putting every tensor back as it was before;
3. one replay on the same batch from the same state and RNG position: every parameter, buffer, optimizer
   slot, the RNG state and the batch values must be `torch.equal` to the eager step's.
If capture fails or anything differs, the run says so in one line and stays eager from the eager result.

Up to two graphs (the full batch, and the epoch's last partial batch); any other shape runs eagerly.
What the graph cannot see is kept on the host: optimizer counters advance after each replay. Only
optimizers whose update reads no host value that changes between steps are graphed (`graph_safe`).
"""
from __future__ import annotations

import contextlib
import sys

import torch

from .errors import CudaGraphError, first_line

MAX_GRAPHS = 2
MAX_RECAPTURES = 3  # host values changed this often (a per-step schedule?): the graphs cost more than they save


def _first_line(e: BaseException) -> str:
    cause = e.__context__ if e.__context__ is not None and "previous error" in str(e) else e
    return first_line(cause, 120)


class CudaBackend:
    """Capture and replay with torch.cuda.CUDAGraph, on the run's device (not the current one)."""

    def __init__(self, device: torch.device):
        self.device = device

    @contextlib.contextmanager
    def warmup(self):
        """A side stream (as torch's docs ask before a capture), with host syncs turned into errors: a step
        that syncs fails here, eagerly and harmlessly, instead of inside the capture."""
        with torch.cuda.device(self.device):
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
            try:
                with torch.cuda.stream(stream):
                    yield
            finally:
                torch.cuda.set_sync_debug_mode(mode)
                torch.cuda.current_stream().wait_stream(stream)

    def capture(self, fn, host):
        with torch.cuda.device(self.device):
            before = torch.cuda.current_stream()
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    out = fn()
            except Exception as e:
                self._recover(before, e)
                raise
        return graph, out

    def _recover(self, stream, error) -> None:
        """A capture that raised skips parts of its clean-up (the stream, the RNG's capture state): put the
        stream back and run one trivial capture that succeeds; if CUDA still fails, the run cannot go on."""
        try:
            torch.cuda.set_stream(stream)
            probe = torch.cuda.CUDAGraph()
            with torch.cuda.graph(probe):
                torch.rand(1, device=self.device)
            torch.rand(1, device=self.device)
            torch.cuda.synchronize(self.device)
        except Exception as e:
            raise CudaGraphError(f"a failed CUDA graph capture ({_first_line(error)}) left CUDA unusable "
                                 f"({_first_line(e)}): rerun with --no-cuda-graphs") from e

    def replay(self, graph) -> None:
        if self.device.index is None or self.device.index == torch.cuda.current_device():
            graph.replay()
        else:
            with torch.cuda.device(self.device):
                graph.replay()

    def get_rng(self):
        return torch.cuda.get_rng_state(self.device)

    def set_rng(self, state) -> None:
        torch.cuda.set_rng_state(state, self.device)


class EmulatedBackend:
    """A stand-in for tests on machines without CUDA: 'replay' calls the step on the static buffers, with
    the host's Python values as they were at capture (a graph bakes them in) and put back afterwards.

    Everything around the graph (static buffers, shape keys, the proof, counters, host checks, falling
    back) runs as it does on CUDA; only the recording itself is not exercised.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def warmup(self):
        return contextlib.nullcontext()

    def capture(self, fn, host):
        get, put = host
        baked = get()

        class Replay:
            def __init__(self):
                self.out = fn()

            def replay(self):
                now = get()
                put(baked)
                try:
                    self.out.copy_(fn())
                finally:
                    put(now)

        graph = Replay()
        return graph, graph.out

    def replay(self, graph) -> None:
        graph.replay()

    def get_rng(self):
        return torch.get_rng_state()

    def set_rng(self, state) -> None:
        torch.set_rng_state(state)


def backend_for(device: torch.device):
    """The capture backend for `device`, or None where there is none (CPU)."""
    return CudaBackend(device) if device.type == "cuda" else None


def why_not(model, optimizer, amp) -> str | None:
    """Why this run's step cannot be graphed, or None when it can."""
    if amp:
        return "mixed precision (autocast's weight cache and the fp16 scaler live on the host)"
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return "DistributedDataParallel"
    if hasattr(model, "_orig_mod"):
        return "torch.compile (its reduce-overhead mode graphs by itself)"
    safe = getattr(optimizer, "graph_safe", None)
    if safe is None or not safe():
        return f"{type(optimizer).__name__} reads a host value that changes between steps"
    return None


class GraphedStep:
    """`step(x, y, share) -> batch values`, replayed from CUDA graphs once proven equal to eager.

    The values returned by a replay are the graph's static output, overwritten by the next replay (the
    engine copies them into its epoch buffer at once). After a replay `p.grad` is not updated (the graph
    writes the gradients to its own memory): read gradients from an eager step, not from a graphed one.
    """

    def __init__(self, step, model, optimizer, backend, warn=None):
        self.step, self.model, self.optimizer, self.backend = step, model, optimizer, backend
        self.graphs: dict = {}
        self.host_key = None
        self.recaptures = 0
        self.disabled = False
        self.warn = warn or (lambda m: print(m, file=sys.stderr))

    def __call__(self, x, y, share: float = 1.0):
        if self.disabled or not (torch.is_tensor(x) and torch.is_tensor(y)):
            return self.step(x, y, share)
        if self.graphs and self._host_key() != self.host_key:  # a callback changed the lr, state was reloaded...
            self.graphs.clear()
            self.recaptures += 1
            if self.recaptures > MAX_RECAPTURES:
                self._give_up("the optimizer's settings or tensors keep changing between steps")
                return self.step(x, y, share)
        key = (tuple(x.shape), x.dtype, x.stride(), tuple(y.shape), y.dtype, float(share))
        entry = self.graphs.get(key)
        if entry is None:
            if len(self.graphs) >= MAX_GRAPHS:
                return self.step(x, y, share)
            return self._capture(key, x, y, share)
        graph, sx, sy, out = entry
        sx.copy_(x)
        sy.copy_(y)
        counters = self._counters()
        self.backend.replay(graph)
        self._set_counters(counters, 1)
        return out

    def _give_up(self, why: str, values=None):
        self.disabled = True
        self.graphs.clear()
        self.warn(f"torchport: CUDA graphs off for this run: {why}; running eagerly")
        return values

    # -- the proof: eager once, capture, replay the same batch from the same state, compare --
    def _capture(self, key, x, y, share):
        before = self._snapshot()
        values = self.step(x, y, share)  # the reference, and this batch's real step if graphs are refused
        after = self._snapshot()
        try:
            sx, sy = x.detach().clone(), y.detach().clone()
            with self.backend.warmup():
                self._restore(before)
                self.step(sx, sy, share)
            self._restore(before)
            graph, out = self.backend.capture(lambda: self.step(sx, sy, share), (self._host_get, self._host_put))
            self._restore(before)
            self.backend.replay(graph)
            differs = self._differs(after, out, values)
        except CudaGraphError:
            raise
        except Exception as e:  # an op that cannot be captured, a sync inside the step, out of memory...
            differs = f"the step cannot be captured ({_first_line(e)})"
        if differs:
            self._restore(after)
            return self._give_up(differs, values)
        self._set_counters(before["counters"], 1)
        self.graphs[key] = (graph, sx, sy, out)
        self.host_key = self._host_key()
        return out

    def _tensors(self) -> list[torch.Tensor]:
        """Everything a step writes and keeps: parameters, buffers, optimizer slots."""
        live = [*self.model.parameters(), *self.model.buffers()]
        for p in live[:]:
            live += [t for t in self.optimizer.state.get(p, {}).values() if torch.is_tensor(t)]
        return live

    def _host_key(self):
        """What a graph baked in from the host: the optimizer's settings, the memory of every tensor it
        touches, the model's mode."""
        groups = [sorted((k, repr(v)) for k, v in g.items() if k not in ("params", "iterations"))
                  for g in self.optimizer.param_groups]
        return groups, [t.data_ptr() for t in self._tensors()], self.model.training

    def _host_get(self) -> list[dict]:
        return [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]

    def _host_put(self, values: list[dict]) -> None:
        for g, v in zip(self.optimizer.param_groups, values, strict=True):
            g.update(v)

    def _snapshot(self) -> dict:
        return {"tensors": {id(t): t.detach().clone() for t in self._tensors()}, "counters": self._counters(),
                "rng": self.backend.get_rng()}

    def _restore(self, snap: dict) -> None:
        """In place (the graph holds these tensors' memory); a slot that did not exist yet gets its fill."""
        fills = getattr(self.optimizer, "_fills", {})
        with torch.no_grad():
            for t in self._tensors():
                saved = snap["tensors"].get(id(t))
                if saved is not None:
                    t.copy_(saved)
                else:
                    t.fill_(fills.get(id(t), 0.0))
        self._set_counters(snap["counters"], 0)
        self.backend.set_rng(snap["rng"])

    def _differs(self, after: dict, out, values) -> str | None:
        if not torch.equal(out, values):
            return "the replayed loss or metrics differ from eager"
        for t in self._tensors():
            if not torch.equal(t, after["tensors"][id(t)]):
                return "a replayed weight or optimizer slot differs from eager"
        if not torch.equal(self.backend.get_rng(), after["rng"]):
            return "the replay drew a different number of random values"
        return None

    def _counters(self) -> list:
        return [g.get("iterations") for g in self.optimizer.param_groups]

    def _set_counters(self, counters: list, plus: int) -> None:
        for g, c in zip(self.optimizer.param_groups, counters, strict=True):
            if c is not None:
                g["iterations"] = c + plus
