"""Hand-written training steps for plain fully connected and plain convolutional
autoencoders on CPU.

At the seed's batch of 64, the `linear` model's arithmetic is small (about 14 million
multiply-adds per step) and most of an autograd step goes to per-operation overhead: the
autograd graph, fresh activation buffers, and the optimizer's Python bookkeeping. For
models that are nothing but Linear layers with ReLU between them and a Sigmoid at the end
(the seed's `linear`, or `mlp` with norm "none" and act "relu"), this module computes the
same step directly: the forward pass into reused buffers, the backward pass written out by
hand with the ATen kernels autograd itself would call (`mm`, `sigmoid_backward`,
`threshold_backward`, `binary_cross_entropy_backward`), and one call of PyTorch's fused
Adam/AdamW kernel on the optimizer's own state. Measured on a 2-core x86 CPU it takes about
0.8 ms per step against 1.6 ms for autograd + torch.optim (benchmarks/train_throughput.py).
ConvStep does the same for Conv2d/ConvTranspose2d/ReLU models ending in a Sigmoid (the
seed's `conv`), with one hand-written op per layer from aelab.convmm: about 3.4 ms per
`conv` step, where autograd over aelab.convmm.forward with FlatAdam takes about 4.8 ms.

The results equal the autograd path's to float rounding (tests/test_fused.py trains both
and compares). Anything these steps do not cover (other layers, GPU devices, bf16,
torch.compile, several processes, CUDA-graph padding, older PyTorch without the fused CPU
kernel) falls back to the general path; `unsupported()` says why.
"""

from __future__ import annotations

import torch
from torch import nn

from . import convmm

aten = torch.ops.aten


def dense_plan(model: nn.Module) -> list[tuple[nn.Linear, bool]] | None:
    """[(linear layer, ReLU after it?)...] for a model whose forward pass is
    Sigmoid(Linear(...ReLU(Linear(x.flatten(1)))...)).view(-1, 1, 28, 28); else None.

    A model opts in with `fused_dense = True` (it promises that forward is exactly
    decoder(encoder(x.flatten(1))) reshaped to images); its layers are then checked here."""
    if not getattr(model, "fused_dense", False):
        return None
    mods = [*model.encoder, *model.decoder]
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


def conv_plan(model: nn.Module) -> list[nn.Module] | None:
    """The layers of a small conv autoencoder that ConvStep can train (aelab.convmm's plan,
    ending in its only Sigmoid); else None."""
    layers = convmm.plan(model)
    if not layers or not isinstance(layers[-1], nn.Sigmoid):
        return None
    if any(isinstance(m, nn.Sigmoid) for m in layers[:-1]):
        return None
    return layers


def make_step(model: nn.Module, optimizer, loss: str, grad_clip: float | None = None):
    """The hand-written step for a model `unsupported` accepts (ValueError if it cannot)."""
    if dense_plan(model) is not None:
        return FusedDenseStep(model, optimizer, loss, grad_clip)
    return ConvStep(model, optimizer, loss, grad_clip)


def unsupported(model: nn.Module, config, device: torch.device, distributed: bool) -> str | None:
    """Why the fused step cannot train this run (None: it can)."""
    if device.type != "cpu":
        return "the fused step is written for the CPU"
    if not hasattr(torch, "_fused_adam_"):
        return "this PyTorch has no fused Adam kernel"
    if dense_plan(model) is None and conv_plan(model) is None:
        return "the model is not Linear or Conv/ReLU layers ending in a Sigmoid"
    if distributed or config.cuda_graphs or config.compile or config.precision != "fp32":
        return "distributed, compiled or bf16 training uses autograd"
    if config.loss not in ("mse", "bce") or config.optimizer not in ("adam", "adamw"):
        return "only MSE/BCE with Adam/AdamW"
    return None


def loss_constants(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1/n and 2/n as 0-dim tensors (a Python float operand costs a tensor conversion)."""
    inv_n = torch.tensor(1.0 / n)
    return inv_n, inv_n * 2


_ONE = torch.ones(())


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
                 grad_clip: float | None = None):
        plan = dense_plan(model)
        if plan is None:
            raise ValueError("model is not a plain dense autoencoder")
        self.layers = [(lin.weight, lin.bias, relu) for lin, relu in plan]
        self.loss, self.grad_clip, self.optimizer = loss, grad_clip, optimizer
        (group,) = optimizer.param_groups
        if {id(p) for w, b, _ in self.layers for p in (w, b)} != {id(p) for p in group["params"]}:
            raise ValueError("the optimizer must hold exactly the model's parameters")
        self.adam = FlatAdam(optimizer)
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

    @torch.no_grad()
    def __call__(self, x_in: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        acts, grads, grads_t, back, g_flat, inv_n, two_inv_n = self._buffers_for(batch)
        inputs = [x_in.reshape(batch, 784), *acts[:-1]]  # what each layer reads
        for i, out in enumerate(acts):
            torch.addmm(self.b[i], inputs[i], self.wt[i], out=out)
            if self.relu[i]:
                out.relu_()
        y = acts[-1].sigmoid_()  # (B, 784) reconstructions
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


class ConvStep:
    """One training step (forward, backward, optimizer) of a `conv_plan` model, such as the
    seed's `conv`, on 28x28 images: aelab.convmm's ops for each layer (matrix products,
    with im2col/col2im where the kernel slides), the loss as in FusedDenseStep, and
    FlatAdam. Against autograd over the same ops it saves
    the graph, the separate weight-gradient accumulation and the optimizer's bookkeeping.
    Same calling convention as FusedDenseStep."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: str,
                 grad_clip: float | None = None, image_shape: tuple = (28, 28, 1)):
        layers = conv_plan(model)
        if layers is None:
            raise ValueError("model is not a plain conv autoencoder")
        (group,) = optimizer.param_groups
        if {id(p) for p in model.parameters()} != {id(p) for p in group["params"]}:
            raise ValueError("the optimizer must hold exactly the model's parameters")
        for p in model.parameters():  # build_ops checks layouts before FlatAdam rebinds them
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        _, out_shape = convmm.build_ops(layers[:-1], image_shape)
        if tuple(out_shape) != tuple(image_shape):
            raise ValueError(f"the model maps {image_shape} to {out_shape}")
        self.adam = FlatAdam(optimizer)
        self.ops, _ = convmm.build_ops(layers[:-1], image_shape)  # views of the flat buffers
        self.loss, self.grad_clip = loss, grad_clip
        self._constants: dict[int, tuple] = {}

    @torch.no_grad()
    def __call__(self, x_in: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if batch not in self._constants:
            self._constants[batch] = loss_constants(x[0].numel() * batch)
        h = x_in.permute(0, 2, 3, 1)  # NHWC
        for op in self.ops:
            h = op.forward(h)
        y = h.sigmoid().view(batch, -1)  # one channel: NHWC and NCHW are the same memory
        g = torch.empty_like(y)
        loss = sigmoid_loss_backward(y, x.reshape(batch, -1), self.loss, g, g.view(-1),
                                     *self._constants[batch])
        g = g.view(h.shape)
        for i in range(len(self.ops) - 1, -1, -1):
            g = self.ops[i].backward(g, i > 0)
        if self.grad_clip is not None:
            self.adam.clip_grad_norm(self.grad_clip)
        self.adam.step()
        return loss


class FlatAdam:
    """torch.optim.Adam/AdamW's update as one fused-kernel call over one flat vector.

    The parameters, their .grad and the optimizer's two moments become views into four flat
    buffers (each keeping the parameter's own strides, so channels_last weights stay so);
    the optimizer object keeps its usual per-parameter state, so checkpoints and resuming
    are unchanged. One kernel over 220,000 numbers takes 92 us a step against 128 us for
    PyTorch's fused kernel over 16 tensors, before the 0.1-0.3 ms of Python bookkeeping
    that torch.optim adds to every step. Autograd accumulates into the .grad views in place
    (zero_grad zeroes the flat buffer instead of dropping the tensors)."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        (group,) = optimizer.param_groups
        if group.get("amsgrad") or group.get("maximize") or not hasattr(torch, "_fused_adam_"):
            raise ValueError("amsgrad/maximize, or a PyTorch without the fused kernel")
        self.optimizer, self.group = optimizer, group
        self.params = list(group["params"])
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in self.params):
            raise ValueError("FlatAdam is for float32 CPU parameters")
        dense = [p.is_contiguous() or p.is_contiguous(memory_format=torch.channels_last)
                 for p in self.params]
        if not all(dense):
            raise ValueError("every parameter must be contiguous or channels_last")
        self.decoupled = isinstance(optimizer, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay"))
        n = sum(p.numel() for p in self.params)
        self.flat = {k: torch.zeros(n) for k in ("param", "grad", "exp_avg", "exp_avg_sq")}
        views = {k: self._views(v) for k, v in self.flat.items()}
        for p, view in zip(self.params, views["param"], strict=True):
            view.copy_(p.detach())
            p.data = view
        for p, view in zip(self.params, views["grad"], strict=True):
            p.grad = view
        for key in ("exp_avg", "exp_avg_sq"):
            for p, view in zip(self.params, views[key], strict=True):
                old = optimizer.state[p].get(key)
                if old is not None:  # resumed: keep the restored moments
                    view.copy_(old)
                optimizer.state[p][key] = view
        steps = {float(optimizer.state[p].get("step", 0.0)) for p in self.params}
        if len(steps) != 1:
            raise ValueError(f"parameters are at different Adam steps {sorted(steps)}")
        # one shared step count (torch.optim.Adam's own fused path keeps a float32 scalar)
        self.step_count = torch.tensor(steps.pop(), dtype=torch.float32)
        for p in self.params:
            optimizer.state[p]["step"] = self.step_count

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        out, offset = [], 0
        for p in self.params:  # same shape and strides as the parameter, in its own span
            out.append(flat.as_strided(p.shape, p.stride(), offset))
            offset += p.numel()
        return out

    def zero_grad(self) -> None:
        self.flat["grad"].zero_()

    def clip_grad_norm(self, max_norm: float) -> None:
        """clip_grad_norm_'s arithmetic, on the one flat gradient."""
        grad = self.flat["grad"]
        coef = max_norm / (torch.linalg.vector_norm(grad) + 1e-6)
        grad.mul_(coef.clamp_(max=1.0))

    def step(self) -> None:
        group = self.group
        beta1, beta2 = group["betas"]
        self.step_count.add_(1)
        f = self.flat
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        kernel([f["param"]], [f["grad"]], [f["exp_avg"]], [f["exp_avg_sq"]], [], [self.step_count],
               amsgrad=False, lr=float(group["lr"]), beta1=beta1, beta2=beta2,
               weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
