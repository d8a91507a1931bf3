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

import warnings

import numpy as np

KNN_NEIGHBOURS = 5
PROBE_MAX_ITER = 300  # lbfgs; enough for standardised codes of up to 64 numbers


def knn_accuracy(train_codes, train_labels, test_codes, test_labels,
                 k: int = KNN_NEIGHBOURS) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute")  # brute: exact, fast at k<=64
    clf.fit(train_codes, np.asarray(train_labels))
    return float(clf.score(test_codes, np.asarray(test_labels)))


def probe_accuracy(train_codes, train_labels, test_codes, test_labels) -> float:
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
