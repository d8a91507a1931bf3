"""How useful a code is beyond reconstruction: digit labels predicted from it.

Both classifiers are fitted on the codes of training images and scored on the codes of
test images, so the labels never touch the autoencoder's own training:

- k-nearest neighbours (k=5, Euclidean, on the raw codes): is the code's geometry
  organised by digit?
- a linear probe: multinomial logistic regression on standardised codes: is the digit
  linearly decodable?

scikit-learn is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from .evaluate import to_float

KNN_NEIGHBOURS = 5
PROBE_MAX_ITER = 300  # lbfgs; enough for standardised codes of up to 64 numbers


@torch.inference_mode()
def encode_all(model, images_u8: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Codes of uint8 images (N, 28, 28) -> (N, latent_dim) float32 numpy, model in eval mode.
    The model and the images must be on the same device."""
    was_training = model.training
    model.eval()
    codes = [model.encode(to_float(images_u8[i : i + batch_size])).float().cpu()
             for i in range(0, len(images_u8), batch_size)]
    model.train(was_training)
    return torch.cat(codes).numpy()


def pca_codes(basis: dict, images_u8: torch.Tensor, k: int) -> np.ndarray:
    """PCA codes (N, k): centred images projected on the first k components."""
    x = images_u8.reshape(len(images_u8), -1).double().div(255.0) - basis["mean"]  # (N, 784)
    return (x @ basis["components"][:k].T).float().numpy()


def knn_accuracy(train_codes, train_labels, test_codes, test_labels,
                 k: int = KNN_NEIGHBOURS) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute")  # brute: exact, fast at k<=64
    clf.fit(train_codes, np.asarray(train_labels))
    return float(clf.score(test_codes, np.asarray(test_labels)))


def probe_accuracy(train_codes, train_labels, test_codes, test_labels) -> float:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
    with warnings.catch_warnings():  # a probe a few steps short of convergence is still a probe
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(train_codes, np.asarray(train_labels))
    return float(clf.score(test_codes, np.asarray(test_labels)))


def label_accuracies(train_codes, train_labels, test_codes, test_labels) -> dict:
    """{"knn_accuracy", "probe_accuracy"} of digit labels from codes (fractions in [0, 1])."""
    args = (train_codes, train_labels, test_codes, test_labels)
    return {"knn_accuracy": knn_accuracy(*args), "probe_accuracy": probe_accuracy(*args)}
