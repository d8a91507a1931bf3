"""The hand-written training step for plain fully connected autoencoders on CPU.

At the seed's batch of 64, the `linear` model's arithmetic is small (about 14 million
multiply-adds per step) and most of an autograd step goes to per-operation overhead: the
autograd graph, fresh activation buffers, and the optimizer's Python bookkeeping. For
models that are nothing but Linear layers with ReLU between them and a Sigmoid at the end
(the seed's `linear`, or `mlp` with norm "none" and act "relu"), FusedDenseStep computes the
same step directly: the forward pass into reused buffers, the backward pass written out by
hand with the ATen kernels autograd itself would call (`mm`, `sigmoid_backward`,
`threshold_backward`, `binary_cross_entropy_backward`), and one FlatAdam update. Measured
on a 2-core x86 CPU it takes about 0.8 ms per step against 1.6 ms for autograd +
torch.optim (benchmarks/train_throughput.py).

The results equal the autograd path's to float rounding (tests/test_fused.py trains both
and compares).
"""

from __future__ import annotations

import torch
from torch import nn

from ...models.contract import fast_path, layer_stack
from .flat_adam import FlatAdam

aten = torch.ops.aten


def dense_plan(model: nn.Module) -> list[tuple[nn.Linear, bool]] | None:
    """[(linear layer, ReLU after it?)...] for a model whose forward pass is
    Sigmoid(Linear(...ReLU(Linear(x.flatten(1)))...)).view(-1, 1, 28, 28); else None.

    A model's spec hints at it with fast_path="dense" (forward is decoder(encoder(x.flatten(1)))
    reshaped to images); its layers are checked here, and make_step compares the forward
    with the model's own (aelab.train.fast.proof) before training with it."""
    if fast_path(model)[0] != "dense":
        return None
    mods = layer_stack(model)
    if not mods or not isinstance(mods[-1], nn.Sigmoid):
        return None
    plan: list[tuple[nn.Linear, bool]] = []
    for i, m in enumerate(mods[:-1]):
        if isinstance(m, nn.Linear) and m.bias is not None:
            plan.append((m, False))
        elif isinstance(m, nn.ReLU) and plan and not plan[-1][1] and isinstance(mods[i - 1], nn.Linear):
            plan[-1] = (plan[-1][0], True)
        else:
            return None
    if not plan or plan[-1][1] or plan[0][0].in_features != 784 or plan[-1][0].out_features != 784:
        return None
    return plan


def loss_constants(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1/n and 2/n as 0-dim tensors (a Python float operand costs a tensor conversion)."""
    inv_n = torch.tensor(1.0 / n)
    return inv_n, inv_n * 2


_ONE = torch.ones(())


def forward_into(x2: torch.Tensor, weights_t, biases, relu, acts) -> list[torch.Tensor]:
    """The forward pass of a dense_plan stack, x2 (B, 784), into the buffers acts (one
    (B, width) per layer); the last becomes the reconstructions sigmoid(a) (B, 784). Returns
    what each layer read. FusedDenseStep trains with exactly this function, and
    `dense_forward` runs it for make_step's comparison with the model's forward."""
    inputs = [x2, *acts[:-1]]
    for i, out in enumerate(acts):
        torch.addmm(biases[i], inputs[i], weights_t[i], out=out)
        if relu[i]:
            out.relu_()
    acts[-1].sigmoid_()
    return inputs


@torch.no_grad()
def dense_forward(plan: list[tuple[nn.Linear, bool]], x: torch.Tensor) -> torch.Tensor:
    """The hand-written forward of a dense_plan model: x (B, 1, 28, 28) -> (B, 1, 28, 28)."""
    acts = [x.new_empty(len(x), lin.out_features) for lin, _ in plan]
    forward_into(x.reshape(len(x), 784), [lin.weight.detach().t() for lin, _ in plan],
                 [lin.bias.detach() for lin, _ in plan], [relu for _, relu in plan], acts)
    return acts[-1].view(-1, 1, 28, 28)


def sigmoid_loss_backward(y, target, loss: str, g, g_flat, inv_n, two_inv_n) -> torch.Tensor:
    """The mean MSE or BCE of reconstructions y = sigmoid(a) (both (B, P)) against target;
    writes d loss / d a into g (g_flat: g as one flat view) and returns the loss (0-dim)."""
    if loss == "bce":
        out = nn.functional.binary_cross_entropy(y, target)
        aten.binary_cross_entropy_backward.grad_input(_ONE, y, target, None, 1, grad_input=g)
    else:
        torch.sub(y, target, out=g)
        out = torch.dot(g_flat, g_flat).mul_(inv_n)
        g.mul_(two_inv_n)  # d mean((y - x)^2) / dy
    aten.sigmoid_backward.grad_input(g, y, grad_input=g)  # now d loss / d a
    return out


class FusedDenseStep:
    """One training step (forward, backward, optimizer) of a `dense_plan` model.

    Call it with the corrupted input and the clean target, both (B, 1, 28, 28) float32; it
    updates the model's parameters in place through `optimizer`'s state (so checkpoints and
    resuming are unchanged) and returns the batch's mean loss as a 0-dim tensor (no sync)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: str,
                 grad_clip: float | None = None,
                 note=print):
        plan = dense_plan(model)
        if plan is None:
            raise ValueError("model is not a plain dense autoencoder")
        self.layers = [(lin.weight, lin.bias, relu) for lin, relu in plan]
        self.loss, self.grad_clip, self.optimizer = loss, grad_clip, optimizer
        (group,) = optimizer.param_groups
        if {id(p) for w, b, _ in self.layers for p in (w, b)} != {id(p) for p in group["params"]}:
            raise ValueError("the optimizer must hold exactly the model's parameters")
        self.adam = FlatAdam(optimizer, note)
        # Plain tensors (no autograd) and transposes made once: per-step view calls and the
        # autograd dispatch on Parameters are a measurable share of a 0.8 ms step.
        self.w = [w.detach() for w, _, _ in self.layers]
        self.wt = [w.t() for w in self.w]
        self.b = [b.detach() for _, b, _ in self.layers]
        self.gw = [w.grad for w, _, _ in self.layers]
        self.gb = [b.grad for _, b, _ in self.layers]
        self.relu = [relu for _, _, relu in self.layers]
        self._buffers: dict[int, tuple] = {}

    def _buffers_for(self, batch: int) -> tuple:
        """Activation and gradient buffers for this batch size, allocated once: fresh 200 KB
        tensors every step cost more than the arithmetic on them here."""
        if batch not in self._buffers:
            acts = [torch.empty(batch, w.shape[0]) for w in self.w]
            grads = [torch.empty(batch, w.shape[0]) for w in self.w]
            back = [torch.empty(batch, w.shape[1]) for w in self.w]  # d / d layer input
            self._buffers[batch] = (acts, grads, [g.t() for g in grads], back,
                                    grads[-1].view(-1), *loss_constants(batch * 784))
        return self._buffers[batch]

    name = "fused-dense"

    @torch.no_grad()
    def __call__(self, x_in: torch.Tensor, x: torch.Tensor, weights=None) -> torch.Tensor:
        assert weights is None, "padded (weighted) batches go through the autograd step"
        batch = x.shape[0]
        acts, grads, grads_t, back, g_flat, inv_n, two_inv_n = self._buffers_for(batch)
        inputs = forward_into(x_in.reshape(batch, 784), self.wt, self.b, self.relu, acts)
        y = acts[-1]  # (B, 784) reconstructions
        g = grads[-1]
        loss = sigmoid_loss_backward(y, x.reshape(batch, 784), self.loss, g, g_flat, inv_n, two_inv_n)
        for i in range(len(acts) - 1, -1, -1):
            # grads[i] holds d loss / d (layer i's output before its activation)
            torch.mm(grads_t[i], inputs[i], out=self.gw[i])
            torch.sum(grads[i], 0, out=self.gb[i])
            if i == 0:
                break
            if self.relu[i - 1]:  # back through layer i, then the ReLU after layer i - 1
                torch.mm(grads[i], self.w[i], out=back[i])
                aten.threshold_backward.grad_input(back[i], inputs[i], 0, grad_input=grads[i - 1])
            else:
                torch.mm(grads[i], self.w[i], out=grads[i - 1])
        if self.grad_clip is not None:
            self.adam.clip_grad_norm(self.grad_clip)
        self.adam.step()
        return loss
