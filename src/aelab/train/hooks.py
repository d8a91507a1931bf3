"""What the training loop does besides training, as small hooks it calls in turn (the idea
of Lightning's callbacks): after each finished epoch (`epoch_end`, with that epoch's
metrics record) and once after the last (`train_end`). They run on the main rank only,
and none of them changes what is trained, so resuming stays bit-for-bit.

- Checkpoints: metrics.jsonl and checkpoints/{last,best} (best by the selection metric);
- TensorBoardEpoch: the record's numbers and the learning rate, with --tensorboard;
- Figures: originals over reconstructions after the seed's epochs (and into TensorBoard);
- LossCurve: loss_curve.png after the last epoch.
"""

from __future__ import annotations

from ..figures import loss_curve
from ..runs import save_checkpoint, write_metrics


class Hook:
    """Both methods do nothing unless a hook overrides them."""

    def epoch_end(self, trainer, epoch: int, record: dict) -> None:
        pass

    def train_end(self, trainer) -> None:
        pass


class Checkpoints(Hook):
    """The metrics so far, `last` with the optimizer and RNG state (what resume reads), and
    `best` when the selection metric improved."""

    def epoch_end(self, trainer, epoch: int, record: dict) -> None:
        write_metrics(trainer.run_dir, trainer.metrics)
        score = record[trainer.selection_metric]
        improved = score < trainer.best
        if improved:
            trainer.best = score
        meta = trainer.checkpoint_meta(epoch)
        folder = trainer.run_dir / "checkpoints"
        save_checkpoint(folder / "last", trainer.model, meta, trainer.optimizer)
        if improved:
            save_checkpoint(folder / "best", trainer.model, meta)


class TensorBoardEpoch(Hook):
    def __init__(self, log):
        self.log = log  # train/tensorboard.py's TensorBoardLog, or its no-op stand-in

    def epoch_end(self, trainer, epoch: int, record: dict) -> None:
        self.log.epoch(record, trainer.optimizer.param_groups[0]["lr"])


class Figures(Hook):
    """RUN_DIR/recon_epochNN.png after the epochs config.figure_epochs() names."""

    def __init__(self, log):
        self.log = log

    def epoch_end(self, trainer, epoch: int, record: dict) -> None:
        if epoch in trainer.config.figure_epochs():
            png = trainer.draw_reconstructions(trainer.run_dir / f"recon_epoch{epoch:02d}.png", epoch)
            self.log.image("reconstructions", png, epoch)


class LossCurve(Hook):
    def train_end(self, trainer) -> None:
        if trainer.metrics:
            c = trainer.config
            loss_curve(trainer.metrics, trainer.run_dir / "loss_curve.png",
                       title=f"{c.model} on {c.dataset}")


def default_hooks(tensorboard_log) -> list[Hook]:
    """The hooks of every run, in the order they run after an epoch."""
    return [Checkpoints(), TensorBoardEpoch(tensorboard_log), Figures(tensorboard_log), LossCurve()]
