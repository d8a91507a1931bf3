"""`aelab anomaly`: the AUC and RaPP's NAP on cases with known answers, then the command end
to end on small slices of MNIST and Fashion-MNIST."""

import inspect
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from aelab.apps import anomaly as A
from aelab.apps.anomaly import format_table, roc_auc, score_holdout
from aelab.cli import main
from aelab.data import ensure_dataset, load_dataset
from aelab.data.batches import reconstruction_sse
from aelab.errors import AelabError, DataError
from aelab.models import build_model


def test_roc_auc_known_answers():
    pos = np.array([0, 0, 0, 1, 1], dtype=bool)
    assert roc_auc([1, 2, 3, 10, 11], pos) == 1.0  # every positive above every negative
    assert roc_auc([10, 11, 12, 1, 2], pos) == 0.0  # exactly backwards
    assert roc_auc([5, 5, 5, 5, 5], pos) == 0.5  # ties count half
    assert roc_auc([1, 4, 3, 2, 5], pos) == pytest.approx(4 / 6)  # 4 of 6 pairs ordered


def test_roc_auc_needs_both_classes():
    with pytest.raises(AelabError, match="positives and negatives"):
        roc_auc([1.0, 2.0], [True, True])


class Zeros(nn.Module):
    """Reconstructs every image as black, so its error is the image's total squared ink."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # reconstruction_sse reads no parameters

    def forward(self, x):
        return torch.zeros_like(x)


def test_a_planted_outlier_class_is_found():
    # class 3: bright squares (lots of ink); all others: faint dots. A model that cannot
    # draw anything scores by ink, so it ranks every 3 first: AUC exactly 1.
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (300,), generator=g)
    images = torch.zeros(300, 28, 28, dtype=torch.uint8)
    images[:, 13:15, 13:15] = torch.randint(20, 60, (300, 1, 1), generator=g).to(torch.uint8)
    images[labels == 3, 6:22, 6:22] = 200
    scores = reconstruction_sse(Zeros(), images)
    result = score_holdout(scores, labels, 3)
    assert result["auc"] == 1.0
    assert result["n_positive"] == int((labels == 3).sum())
    assert result["mean_score_positive"] > result["mean_score_negative"]
    # a class drawn like all the others cannot be told apart by this score
    assert score_holdout(scores, labels, 5)["auc"] == pytest.approx(0.5, abs=0.1)


def test_table_has_a_row_per_class_and_the_mean():
    rows = [{"name": "0", "auc": 0.9, "auc_sse": 0.8, "auc_sap": 0.7, "pca_auc": 0.6, "pca_k": 16,
             "mean_score_positive": 900.0, "mean_score_negative": 100.0,
             "mean_error_positive": 30.0, "mean_error_negative": 20.0},
            {"name": "1", "auc": 0.5, "auc_sse": 0.6, "auc_sap": 0.5, "pca_auc": 0.4, "pca_k": 16,
             "mean_score_positive": 800.0, "mean_score_negative": 200.0,
             "mean_error_positive": 10.0, "mean_error_negative": 20.0}]
    table = format_table(rows).splitlines()
    assert table[0] == ("| held out | RaPP NAP AUC | SSE AUC | SAP AUC | PCA-16 AUC | "
                        "mean error, anomalies | mean error, normal |")
    assert table[2] == "| 0 | 0.900 | 0.800 | 0.700 | 0.600 | 30.00 | 20.00 |"  # errors: SSE
    assert len(table) == 5 and table[-1] == "| mean | 0.700 | 0.700 | 0.600 | 0.500 |  |  |"
    text = format_table(rows, markdown=False).splitlines()
    assert text[-1].split() == ["mean", "0.700", "0.700", "0.600", "0.500"]


def test_a_summary_from_before_rapp_still_formats():
    """Before RaPP, "auc" held the squared error's AUC and the mean scores were errors."""
    rows = [{"name": "0", "auc": 0.9, "mean_score_positive": 30.0, "mean_score_negative": 20.0},
            {"name": "1", "auc": 0.5, "pca_auc": 0.4, "mean_score_positive": 10.0,
             "mean_score_negative": 20.0}]
    table = format_table(rows).splitlines()
    assert table[2] == "| 0 | - | 0.900 | - | - | 30.00 | 20.00 |"
    assert table[-1] == "| mean | - | 0.700 | - | - |  |  |"


# --- RaPP (Kim et al. 2020) -------------------------------------------------------------


def _fixed(module: nn.Module, seed: int, scale: float) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


class Halver(nn.Module):
    """Reconstructs x as x / 2, with a Sequential encoder Flatten-Linear(784, 4)-ReLU-Linear(4, 2)."""

    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.encoder = _fixed(nn.Sequential(nn.Flatten(), nn.Linear(784, 4), nn.ReLU(),
                                            nn.Linear(4, 2)), 0, 0.1)

    def encode(self, x):
        return self.encoder(x)

    def forward(self, x):
        return x / 2


def _halver_d(model: Halver, images_u8) -> np.ndarray:
    """Halver's pathway differences by hand: [x - x/2, relu(W1 x + b1) - (same at x/2), code
    difference], float64 (N, 784 + 4 + 2)."""
    w1, b1 = (p.detach().double().numpy() for p in model.encoder[1].parameters())
    w2, b2 = (p.detach().double().numpy() for p in model.encoder[3].parameters())
    x = images_u8.reshape(len(images_u8), -1).double().numpy() / 255

    def h1(v):
        return np.maximum(v @ w1.T + b1, 0)

    code = lambda v: h1(v) @ w2.T + b2  # noqa: E731
    return np.hstack([x / 2, h1(x) - h1(x / 2), code(x) - code(x / 2)])


def test_nap_is_the_mahalanobis_distance_of_the_training_differences():
    """NAP(x) = ||((d - mu) V) / S||^2 = (d - mu)^T (D^T D)^+ (d - mu), with D the centred
    training differences: the squared Mahalanobis distance under their covariance, over N."""
    g = torch.Generator().manual_seed(1)
    train_u8 = torch.randint(0, 256, (1000, 28, 28), generator=g, dtype=torch.uint8)
    test_u8 = torch.randint(0, 256, (20, 28, 28), generator=g, dtype=torch.uint8)
    model = Halver()
    assert [tuple(h.shape) for h in A.pathway(model, torch.rand(3, 1, 28, 28))] == \
        [(3, 1, 28, 28), (3, 4), (3, 2)]  # input, the ReLU's output, the code
    d_train, sap, plan = A.rapp_features(model, train_u8, batch_size=300)
    by_hand = _halver_d(model, train_u8)
    assert plan == [(1, 28, 28), (4,), (2,)] and d_train.shape == (1000, 790)
    np.testing.assert_allclose(d_train.numpy(), by_hand, atol=1e-5)
    np.testing.assert_allclose(sap, (by_hand ** 2).sum(1), rtol=1e-5)
    fit = A.fit_nap(d_train)
    # directions with no spread are dropped by numpy's matrix_rank cutoff: the code's
    # difference is W2 times the ReLU's, and a ReLU always on (or off) is linear in x
    assert len(fit.s) == np.linalg.matrix_rank(d_train.numpy() - d_train.numpy().mean(0)) < 790
    d_test, _, _ = A.rapp_features(model, test_u8, plan)
    cov = np.cov(by_hand.T, bias=True)  # (790, 790)
    dt = _halver_d(model, test_u8) - by_hand.mean(0)
    expected = np.einsum("ni,ij,nj->n", dt, np.linalg.pinv(cov, rcond=1e-9, hermitian=True), dt) / 1000
    np.testing.assert_allclose(A.nap_scores(fit, d_test), expected, rtol=2e-3)


class Blind(nn.Module):
    """Reconstructs every image as black, through a Sequential encoder with a Tanh."""

    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.encoder = _fixed(nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.Tanh(),
                                            nn.Linear(8, 2)), 2, 0.05)

    def encode(self, x):
        return self.encoder(x)

    def forward(self, x):
        return torch.zeros_like(x)


def _dots(n: int, labels, g) -> torch.Tensor:
    """Faint noise everywhere and a 2x2 dot of ink 20 to 60: in the centre, or in the corner
    for class 3. The same ink either way, so the squared error of a blank reconstruction
    cannot tell the classes apart."""
    images = torch.randint(0, 20, (n, 28, 28), generator=g).to(torch.uint8)
    ink = torch.randint(20, 60, (n, 1, 1), generator=g).to(torch.uint8)
    centre, corner = labels != 3, labels == 3
    images[centre, 13:15, 13:15] = ink[centre]
    images[corner, 2:4, 2:4] = ink[corner]
    return images


def test_nap_ranks_a_planted_anomaly_first_where_squared_error_cannot():
    g = torch.Generator().manual_seed(0)
    # normal images only, several per dimension of the pathway (794), so that NAP's
    # covariance is well estimated
    train_u8 = _dots(3200, torch.zeros(3200, dtype=torch.long), g)
    labels = torch.randint(0, 10, (400,), generator=g)
    test_u8 = _dots(400, labels, g)
    nap, _, info = A.rapp_scores(Blind(), train_u8, test_u8, max_fit=3000)
    assert info["nap_fit_images"] == 3000 and info["nap_layers"] == [[1, 28, 28], [8], [2]]
    assert score_holdout(nap, labels, 3)["auc"] == 1.0
    # the same ink: a blank reconstruction's squared error is chance
    assert score_holdout(reconstruction_sse(Blind(), test_u8), labels, 3)["auc"] == \
        pytest.approx(0.5, abs=0.1)


class Projector(nn.Module):
    """A linear autoencoder with encode/decode only: its `encoder` is no Sequential."""

    latent_dim = 3

    def __init__(self):
        super().__init__()
        self.encoder = _fixed(nn.Linear(784, 3, bias=False), 3, 0.05)

    def encode(self, x):
        return self.encoder(x.flatten(1))

    def decode(self, z):
        return (z @ self.encoder.weight).view(-1, 1, 28, 28)

    def forward(self, x):
        return self.decode(self.encode(x))


def test_a_model_without_a_sequential_encoder_has_the_pathway_input_and_code():
    model = Projector()
    images = torch.randint(0, 256, (7, 28, 28), generator=torch.Generator().manual_seed(4),
                           dtype=torch.uint8)
    d, sap, plan = A.rapp_features(model, images, batch_size=3)
    x = images.reshape(7, -1).double().numpy() / 255
    w = model.encoder.weight.detach().double().numpy()  # (3, 784)
    x_hat = x @ w.T @ w
    by_hand = np.hstack([x - x_hat, x @ w.T - x_hat @ w.T])  # (7, 784 + 3)
    assert plan == [(1, 28, 28), (3,)]
    np.testing.assert_allclose(d.numpy(), by_hand, atol=1e-5)
    np.testing.assert_allclose(sap, (by_hand ** 2).sum(1), rtol=1e-5)


def test_wide_layers_are_average_pooled_to_fit():
    # conv's pathway: the input, two ReLU maps and the 64-number code; the widest map is
    # halved until the whole fits
    assert A.pool_plan([(1, 28, 28), (16, 14, 14), (32, 7, 7), (64, 1, 1)], 2600) == \
        [(1, 28, 28), (16, 7, 7), (32, 4, 4), (64,)]
    assert A.pool_plan([(3000,), (10,)], 1000) == [(750,), (10,)]
    h = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    assert A._reduce(h, (2, 2, 2)).tolist() == [[2.5, 4.5, 10.5, 12.5, 18.5, 20.5, 26.5, 28.5]]
    images = torch.randint(0, 256, (4, 28, 28), generator=torch.Generator().manual_seed(5),
                           dtype=torch.uint8)
    d, _, plan = A.rapp_features(build_model("convnet"), images)  # 44,718 numbers unpooled
    assert d.shape == (4, sum(np.prod(s) for s in plan)) and 2000 < d.shape[1] <= A.NAP_MAX_DIM


def test_train_options_are_checked_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    none = tmp_path / "no-data"
    for options, error in [({"optimizer": "sgd"}, "invalid optimizer='sgd'"),
                           ({"epochs": 5, "seed": 1}, r"\['epochs', 'seed'\] are set by the anomaly"),
                           ({"learning_rate": 1e-3}, "unknown training config keys"),
                           ({"exclude_digits": [1]}, "set by the anomaly protocol")]:
        with pytest.raises(AelabError, match=error):
            A.anomaly([0], out, train_options=options, data_dir=none, log=lambda _m: None)
    with pytest.raises(AelabError, match="model_args"):
        A.anomaly([0], out, model_args=[8], data_dir=none, log=lambda _m: None)
    assert not out.exists() and not none.exists()
    assert main(["anomaly", "--digit", "0", "--train-options", "[1]", "--out", str(out)]) == 2
    assert "--train-options must be a JSON object" in capsys.readouterr().err
    assert main(["anomaly", "--digit", "0", "--model-args", "{8", "--out", str(out)]) == 2
    assert "--model-args is not valid JSON" in capsys.readouterr().err


def test_runs_are_labelled_by_what_the_protocol_trains_on():
    assert A.run_label(9, "one-class") == "normal 9"  # trained on the nines alone
    assert A.run_label(9, "leave-one-out") == "holdout 9"  # trained without them


def _calls_to_anomaly(monkeypatch) -> list[dict]:
    """Replace apps.anomaly.anomaly: record each call's arguments (defaults filled in) and
    return one made-up class, so that the callers run on without training anything."""
    real, calls = A.anomaly, []

    def fake(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(dict(bound.arguments))
        return [{"name": "0", "holdout": 0, "protocol": kwargs["protocol"], "auc": 0.5,
                 "auc_sse": 0.5, "auc_sap": 0.5, "pca_auc": 0.5, "pca_k": 16}]

    monkeypatch.setattr(A, "anomaly", fake)
    return calls


@pytest.mark.parametrize("protocol", A.PROTOCOLS)
def test_preset_results_trains_as_the_results_group_does(monkeypatch, tmp_path, protocol):
    """`aelab anomaly --preset results` hands apps.anomaly.anomaly what `aelab results
    --only anomaly` hands it (all but where the output goes and how it is logged)."""
    from aelab.results import anomaly as tasks

    calls = _calls_to_anomaly(monkeypatch)
    tasks._anomaly_protocol(protocol, root=tmp_path, quick=False, force=True, data_dir=None,
                            device=None, log=lambda _m: None)
    assert main(["anomaly", "--preset", "results", "--protocol", protocol, "--digit", "all",
                 "--out", str(tmp_path / "cli")]) == 0
    results_group, cli = ({k: v for k, v in c.items() if k not in ("out", "log")} for c in calls)
    cli["dataset_options"] = cli["dataset_options"] or None  # the flag's empty default
    assert cli == results_group
    assert cli["model"] == "mlp" and cli["epochs"] == {"one-class": 30, "leave-one-out": 5}[protocol]


def test_flags_override_the_preset_and_defaults_stay_quick(monkeypatch, tmp_path, capsys):
    calls = _calls_to_anomaly(monkeypatch)
    assert main(["anomaly", "--preset", "results", "--digit", "3", "--epochs", "1",
                 "--latent-dim", "8", "--train-options", '{"lr": 0.01}',
                 "--out", str(tmp_path / "a")]) == 0
    assert "mlp (preset results) on mnist, one-class: 1 epochs" in capsys.readouterr().out
    assert main(["anomaly", "--digit", "3", "--out", str(tmp_path / "b")]) == 0
    preset, plain = calls
    assert preset["holdouts"] == [3] and preset["epochs"] == 1
    assert preset["model_args"] == {"shape": "hinton2006", "latent_dim": 8, "norm": "batch",
                                    "act": "gelu"}
    assert preset["train_options"]["lr"] == 0.01 and preset["train_options"]["loss"] == "bce"
    assert (plain["model"], plain["epochs"], plain["model_args"]) == ("conv", A.EPOCHS, {})
    assert not plain["train_options"]


# --- end to end ------------------------------------------------------------------------


def _anomaly(mnist_dir, out, *args):
    return main(["anomaly", *args, "--limit", "1024", "--epochs", "1", "--out", str(out),
                 "--data-dir", str(mnist_dir), "--device", "cpu"])


def _png_size(path):
    with Image.open(path) as im:
        im.load()
        return im.size


def test_anomaly_one_digit_end_to_end(mnist_dir, tmp_path, capsys):
    out = tmp_path / "anom"
    assert _anomaly(mnist_dir, out, "--protocol", "leave-one-out", "--holdout-digit", "0") == 0
    printed = capsys.readouterr().out
    assert "RaPP NAP AUC" in printed and "SSE AUC" in printed and str(out / "anomaly.md") in printed
    assert "[holdout 0] " in printed and "[normal" not in printed  # trained without the zeros
    run = out / "holdout-0"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["exclude_digits"] == [0] and cfg["model"] == "conv" and cfg["limit"] == 1024
    summary = json.loads((run / "anomaly.json").read_text())
    assert summary["n_positive"] == 980 and summary["n_negative"] == 9020  # MNIST test zeros
    # zeros carry the most ink; a model that never saw one reconstructs them worst
    assert summary["auc_sse"] > 0.7
    # one epoch on 1,024 images: RaPP is still better than chance
    assert summary["auc"] > 0.6 and summary["auc_sap"] > 0.6
    assert summary["score"].startswith("RaPP NAP (Kim et al. 2020)")
    # NAP fitted on the 1,024 training images, conv's pathway pooled to 2,144 numbers
    assert summary["nap_fit_images"] == 1024 and summary["nap_dim"] == 2144
    assert summary["nap_layers"] == [[1, 28, 28], [16, 7, 7], [32, 4, 4], [64]]
    assert summary["protocol"] == "leave-one-out" and summary["pca_k"] == 8
    assert 0.5 < summary["pca_auc"] <= 1
    for png in ("roc.png", "scores.png"):
        w, h = _png_size(run / png)
        assert w > 300 and h > 200
    (result,) = json.loads((out / "anomaly.json").read_text())["results"]
    assert result["auc"] == summary["auc"]
    assert "| 0 |" in (out / "anomaly.md").read_text()


@pytest.mark.slow
def test_anomaly_all_digits_writes_the_table(mnist_dir, tmp_path):
    out = tmp_path / "all"
    assert main(["anomaly", "--protocol", "leave-one-out", "--holdout-digit", "all", "--limit", "256",
                 "--epochs", "1",
                 "--out", str(out), "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    results = json.loads((out / "anomaly.json").read_text())["results"]
    assert [r["holdout"] for r in results] == list(range(10))
    assert all(0 <= r["auc"] <= 1 for r in results)
    assert len((out / "anomaly.md").read_text().splitlines()) == 2 + 10 + 1
    assert _png_size(out / "roc_all.png")[0] > 300


@pytest.fixture(scope="session")
def fashion_dir(mnist_dir):
    """Fashion-MNIST beside MNIST (copied from the Debian package where it is installed)."""
    try:
        ensure_dataset("fashion-mnist", mnist_dir)
    except DataError as e:
        pytest.skip(f"Fashion-MNIST is not available here: {e}")
    return mnist_dir


def test_anomaly_on_fashion_mnist(fashion_dir, tmp_path):
    out = tmp_path / "fashion"
    assert main(["anomaly", "--dataset", "fashion-mnist", "--protocol", "leave-one-out",
                 "--holdout-digit", "8", "--limit", "1024",
                 "--epochs", "1", "--out", str(out), "--data-dir", str(fashion_dir),
                 "--device", "cpu"]) == 0
    summary = json.loads((out / "holdout-8" / "anomaly.json").read_text())
    assert summary["dataset"] == "fashion-mnist" and summary["name"] == "Bag"
    assert summary["n_positive"] == 1000  # 1,000 test images per Fashion-MNIST class
    assert "| Bag |" in (out / "anomaly.md").read_text()


def test_anomaly_refuses_an_existing_run(mnist_dir, tmp_path, capsys):
    out = tmp_path / "again"
    (out / "holdout-3").mkdir(parents=True)
    (out / "holdout-3" / "config.json").write_text("{}")
    assert _anomaly(mnist_dir, out, "--holdout-digit", "3") == 2
    assert "already holds a run" in capsys.readouterr().err


def test_one_class_is_the_default_protocol_with_pca_on_the_same_images(mnist_dir, tmp_path, capsys):
    """Train on the ones alone; the other nine digits (every other test image) are the
    anomalies, for the model and for PCA-16 fitted on the same 1,024 training ones."""
    out = tmp_path / "oc"
    assert _anomaly(mnist_dir, out, "--digit", "1") == 0
    run = out / "holdout-1"
    cfg = json.loads((run / "config.json").read_text())
    assert sorted(cfg["exclude_digits"]) == [0, 2, 3, 4, 5, 6, 7, 8, 9]
    summary = json.loads((run / "anomaly.json").read_text())
    assert summary["protocol"] == "one-class" and summary["pca_k"] == 16
    assert summary["n_positive"] == 10_000 - 1135 and summary["n_negative"] == 1135  # test ones
    assert summary["auc"] > 0.9 and summary["auc_sse"] > 0.9 and summary["pca_auc"] > 0.9  # easy
    table = (out / "anomaly.md").read_text()
    assert "| normal class | RaPP NAP AUC | SSE AUC | SAP AUC | PCA-16 AUC |" in table
    assert "| 1 |" in table
    printed = capsys.readouterr().out
    assert "one-class" in printed
    assert "[normal 1] " in printed and "[holdout" not in printed  # trained on the ones alone


def test_pca_scores_rank_an_unseen_class_as_anomalous(mnist_dir):
    from aelab.apps.anomaly import anomalies, pca_scores

    tx, ty = load_dataset("mnist", "train", data_dir=mnist_dir)
    sx, sy = load_dataset("mnist", "test", data_dir=mnist_dir)
    zeros = tx[ty == 0][:2000]
    scores = pca_scores(zeros, sx, 16)
    assert roc_auc(scores, anomalies(sy.numpy(), 0, "one-class")) > 0.95
    assert (anomalies(sy.numpy(), 0, "leave-one-out") == (sy.numpy() == 0)).all()


def test_model_args_and_train_options_reach_the_runs(mnist_dir, tmp_path):
    out = tmp_path / "opts"
    assert _anomaly(mnist_dir, out, "--digit", "7", "--model", "mlp", "--latent-dim", "8",
                    "--model-args", '{"hidden": [64], "norm": "none", "act": "relu"}',
                    "--train-options", '{"optimizer": "adamw", "schedule": "onecycle", '
                    '"batch_size": 128, "lr": 0.003, "loss": "bce"}') == 0
    cfg = json.loads((out / "holdout-7" / "config.json").read_text())
    assert cfg["model_args"] == {"hidden": [64], "norm": "none", "act": "relu", "latent_dim": 8}
    assert (cfg["optimizer"], cfg["schedule"], cfg["batch_size"], cfg["lr"], cfg["loss"]) == \
        ("adamw", "onecycle", 128, 0.003, "bce")
    summary = json.loads((out / "holdout-7" / "anomaly.json").read_text())
    assert summary["nap_layers"] == [[1, 28, 28], [64], [8]] and 0.5 < summary["auc"] <= 1


def test_the_class_to_single_out_is_checked_against_the_dataset(mnist_dir, tmp_path, capsys):
    """No MNIST constant in the command: the class count comes from the dataset."""
    assert _anomaly(mnist_dir, tmp_path / "a", "--holdout-digit", "12") == 2
    assert "has classes 0 to 9" in capsys.readouterr().err
    assert _anomaly(mnist_dir, tmp_path / "b", "--holdout-digit", "nine") == 2
    assert "give a class number" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
