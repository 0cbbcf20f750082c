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

MAX_GRAPHS = 2


class CudaBackend:
    """Capture and replay with torch.cuda.CUDAGraph."""

    def __init__(self, device: torch.device):
        self.device = device

    def warmup_stream(self):
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))

        @contextlib.contextmanager
        def ctx():
            with torch.cuda.stream(stream):
                yield
            torch.cuda.current_stream(self.device).wait_stream(stream)
        return ctx()

    def capture(self, fn, host_state):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
        return graph, out

    def get_rng(self):
        return torch.cuda.get_rng_state(self.device)

    def set_rng(self, state) -> None:
        torch.cuda.set_rng_state(state, self.device)


class EmulatedBackend:
    """A stand-in for tests on machines without CUDA: 'replay' calls the step on the static buffers.

    Everything around the graph (static buffers, shape keys, the proof step, counters, falling back) runs
    as it does on CUDA; only the recording itself is not exercised.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def warmup_stream(self):
        return contextlib.nullcontext()

    def capture(self, fn, host_state):
        get, put = host_state

        class Replay:
            def __init__(self):
                self.out = fn()

            def replay(self):  # like a real replay, it leaves the host's Python state alone
                saved = get()
                self.out.copy_(fn())
                put(saved, 0)

        graph = Replay()
        return graph, graph.out

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
    """`step(x, y, share) -> batch values`, replayed from CUDA graphs once proven equal to eager."""

    def __init__(self, step, model, optimizer, backend, warn=None):
        self.step, self.model, self.optimizer, self.backend = step, model, optimizer, backend
        self.graphs: dict = {}
        self.disabled = False
        self.warn = warn or (lambda m: print(m, file=sys.stderr))

    def __call__(self, x, y, share: float = 1.0):
        if self.disabled or not (torch.is_tensor(x) and torch.is_tensor(y)):
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
        graph.replay()
        self._set_counters(counters, 1)
        return out

    # -- the proof: eager once, capture, replay the same batch from the same state, compare --
    def _capture(self, key, x, y, share):
        before = self._snapshot()
        values = self.step(x, y, share)  # the reference, and this batch's real step if graphs are refused
        after = self._snapshot()
        try:
            sx, sy = x.detach().clone(), y.detach().clone()
            with self.backend.warmup_stream():
                self._restore(before)
                self.step(sx, sy, share)
            self._restore(before)
            graph, out = self.backend.capture(lambda: self.step(sx, sy, share),
                                              (self._counters, self._set_counters))
            self._restore(before)
            graph.replay()
            differs = self._differs(after, out, values)
        except Exception as e:  # an op that cannot be captured, a sync inside the step, out of memory...
            differs = f"capture failed ({(str(e).strip().splitlines() or [type(e).__name__])[0][:120]})"
        if differs:
            self._restore(after)
            self.disabled = True
            self.warn(f"torchport: CUDA graphs off for this run: {differs}; running eagerly")
            return values
        self._set_counters(before["counters"], 1)
        self.graphs[key] = (graph, sx, sy, out)
        return out

    def _tensors(self) -> list[torch.Tensor]:
        """Everything a step writes and keeps: parameters, buffers, optimizer slots."""
        live = [*self.model.parameters(), *self.model.buffers()]
        for p in live[:]:
            live += [t for t in self.optimizer.state.get(p, {}).values() if torch.is_tensor(t)]
        return live

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
